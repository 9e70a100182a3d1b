// SPDX-License-Identifier: Apache-2.0
//
// csv sink: RFC 4180 files, one per record type: <dir>/<probe>_<event>.csv. The header is
// the common columns plus the fields of the first record of that type; a later record with a
// field the header lacks puts it in the last column, "extra", as key=value pairs.
#include "../common/format.hpp"

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <cerrno>
#include <cstdio>
#include <deque>
#include <stdio_ext.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

namespace procimage::sinks {

class csv_sink final : public sdk::sink {
public:
	static void validate(const std::string &text) { read(text); }

	csv_sink(const pi_host &host, const std::string &text) : sdk::sink(host)
	{
		dir_ = read(text);
		std::error_code ec;
		std::filesystem::create_directories(dir_, ec);
		if (ec)
			throw std::runtime_error("dir: cannot create " + dir_ + ": " + ec.message());
	}

	~csv_sink() override
	{
		for (auto &[_, f] : files_)
			std::fclose(f.fp);
	}

	void write(const pi_record &r) override
	{
		std::string name = std::string(r.probe ? r.probe : "") + "_" + (r.event ? r.event : "");
		for (char &c : name)
			if (c == '/' || c == '\0')
				c = '_';
		auto it = files_.find(name);
		if (it == files_.end())
			it = open(name, r);
		file &f = it->second;
		std::string line = std::to_string(r.ts_ns) + "," + csv_cell(r.probe ? r.probe : "") + "," +
				   csv_cell(r.event ? r.event : "") + "," + std::to_string(r.pid) + "," +
				   std::to_string(r.tid) + "," + csv_cell(r.comm ? r.comm : "") + "," +
				   (r.cpu >= 0 ? std::to_string(r.cpu) : "") + "," + std::to_string(r.pid_start_ns);
		std::vector<std::string> cells(f.columns.size());
		std::string extra;
		for (uint32_t i = 0; i < r.nfields; i++) {
			auto c = f.index.find(r.fields[i].key);
			std::string v = plain_value(r.fields[i]);
			if (c == f.index.end())
				extra += (extra.empty() ? "" : " ") + std::string(r.fields[i].key) + "=" + v;
			else
				cells[c->second] = v;
		}
		for (const auto &c : cells)
			line += "," + csv_cell(c);
		line += "," + csv_cell(extra) + "\r\n";
		if (std::fwrite(line.data(), 1, line.size(), f.fp) != line.size())
			fail(name + ".csv: write failed: ");
		f.written += static_cast<off_t>(line.size());
		f.row_ends.push_back(f.written);
	}

	void flush() override
	{
		for (auto &[name, f] : files_) {
			if (std::fflush(f.fp) != 0)
				fail(name + ".csv: flush failed: ");
			f.flushed = f.written;
			f.row_ends.clear();
		}
	}

private:
	struct file {
		FILE *fp;
		std::vector<std::string> columns;
		std::map<std::string, size_t> index;
		off_t written = 0;          // bytes handed to stdio, whole rows only
		off_t flushed = 0;          // of which the last successful flush wrote out
		std::deque<off_t> row_ends; // ends of the rows written since then
	};

	// A failed write or flush (a full disk) may have left part of a row in any of the files
	// (a quoted cell may hold a line break, so a row's end is known only from what was
	// written): drop what stdio still holds and cut each file back to the end of its last
	// whole row.
	[[noreturn]] void fail(const std::string &what)
	{
		int err = errno;
		bool cut = true;
		for (auto &[_, f] : files_) {
			__fpurge(f.fp);
			struct stat st{};
			int fd = fileno(f.fp);
			if (fstat(fd, &st) != 0) {
				cut = false;
				continue;
			}
			off_t keep = f.flushed;
			for (off_t e : f.row_ends)
				if (e <= st.st_size)
					keep = e;
			if (keep < st.st_size && ftruncate(fd, keep) != 0)
				cut = false;
		}
		throw std::runtime_error(what + std::strerror(err) +
					 (cut ? "" : " (and a file could not be cut back to its last whole row)"));
	}

	static std::string read(const std::string &text)
	{
		sdk::config_reader r(text);
		std::string dir = r.get_string("dir", "");
		if (dir.empty())
			throw sdk::config_error("dir: required (folder for one CSV file per record type)");
		r.finish();
		return dir;
	}

	std::map<std::string, file>::iterator open(const std::string &name, const pi_record &r)
	{
		std::string path = dir_ + "/" + name + ".csv";
		FILE *fp = std::fopen(path.c_str(), "w");
		if (!fp)
			throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
		file f{fp, {}, {}};
		std::string header = "ts_ns,probe,event,pid,tid,comm,cpu,pid_start_ns";
		for (uint32_t i = 0; i < r.nfields; i++) {
			f.index[r.fields[i].key] = f.columns.size();
			f.columns.emplace_back(r.fields[i].key);
			header += "," + csv_cell(r.fields[i].key);
		}
		header += ",extra\r\n";
		if (std::fwrite(header.data(), 1, header.size(), fp) != header.size()) {
			int e = errno;
			std::fclose(fp);
			throw std::runtime_error("cannot write " + path + ": " + std::strerror(e));
		}
		f.written = static_cast<off_t>(header.size());
		f.row_ends.push_back(f.written);
		return files_.emplace(name, std::move(f)).first;
	}

	std::string dir_;
	std::map<std::string, file> files_;
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::csv_sink, "csv", PROCIMAGE_VERSION,
		      "RFC 4180 CSV, one file per record type");
