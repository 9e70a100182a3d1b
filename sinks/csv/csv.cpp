// SPDX-License-Identifier: Apache-2.0
//
// csv sink: RFC 4180 files, one per record type: <dir>/<probe>_<event>.csv. The header is
// the common columns plus the fields of the first record of that type; a later record with a
// field the header lacks puts it in the last column, "extra", as key=value pairs.
#include "../common/format.hpp"

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <charconv>
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
		name_.clear();
		name_.append(r.probe ? r.probe : "").append("_").append(r.event ? r.event : "");
		for (char &c : name_)
			if (c == '/' || c == '\0')
				c = '_';
		auto it = files_.find(name_);
		if (it == files_.end())
			it = open(name_, r);
		file &f = it->second;
		// one row built in a buffer kept from row to row: nothing is allocated per record
		std::string &line = line_;
		line.clear();
		append_u(line, r.ts_ns);
		line += ',';
		append_csv_cell(line, r.probe ? r.probe : "");
		line += ',';
		append_csv_cell(line, r.event ? r.event : "");
		line += ',';
		append_u(line, r.pid);
		line += ',';
		append_u(line, r.tid);
		line += ',';
		append_csv_cell(line, r.comm ? r.comm : "");
		line += ',';
		if (r.cpu >= 0)
			append_u(line, static_cast<uint32_t>(r.cpu));
		line += ',';
		append_u(line, r.pid_start_ns);
		if (same_columns(f, r)) {
			// the usual case: the fields of the header's record, in its order
			for (uint32_t i = 0; i < r.nfields; i++) {
				value_.clear();
				append_plain_value(value_, r.fields[i]);
				line += ',';
				append_csv_cell(line, value_);
			}
			line += ',';
		} else {
			cells_.resize(f.columns.size());
			for (auto &c : cells_)
				c.clear();
			extra_.clear();
			for (uint32_t i = 0; i < r.nfields; i++) {
				const char *key = r.fields[i].key ? r.fields[i].key : "";
				auto c = f.index.find(std::string_view(key));
				if (c == f.index.end()) {
					if (!extra_.empty())
						extra_ += ' ';
					extra_.append(key).append("=");
					append_plain_value(extra_, r.fields[i]);
				} else {
					cells_[c->second].clear();
					append_plain_value(cells_[c->second], r.fields[i]);
				}
			}
			for (const auto &c : cells_) {
				line += ',';
				append_csv_cell(line, c);
			}
			line += ',';
			append_csv_cell(line, extra_);
		}
		line += "\r\n";
		if (std::fwrite(line.data(), 1, line.size(), f.fp) != line.size())
			fail(name_ + ".csv: write failed: ");
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
		std::map<std::string, size_t, std::less<>> index;
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

	std::map<std::string, file, std::less<>>::iterator open(const std::string &name, const pi_record &r)
	{
		std::string path = dir_ + "/" + name + ".csv";
		FILE *fp = std::fopen(path.c_str(), "w");
		if (!fp)
			throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
		std::setvbuf(fp, nullptr, _IOFBF, 256 * 1024); // rows reach the file in large writes
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

	template <typename T> static void append_u(std::string &out, T v)
	{
		char buf[24];
		auto r = std::to_chars(buf, buf + sizeof buf, v);
		out.append(buf, r.ptr);
	}

	// Whether the record's fields are the file's columns, in the same order.
	static bool same_columns(const file &f, const pi_record &r)
	{
		if (r.nfields != f.columns.size() || f.index.size() != f.columns.size()) // (a key twice: the slow path)
			return false;
		for (uint32_t i = 0; i < r.nfields; i++)
			if (f.columns[i] != (r.fields[i].key ? r.fields[i].key : ""))
				return false;
		return true;
	}

	std::string dir_;
	std::map<std::string, file, std::less<>> files_;
	std::string name_, line_, value_, extra_; // kept from record to record
	std::vector<std::string> cells_;
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::csv_sink, "csv", PROCIMAGE_VERSION,
		      "RFC 4180 CSV, one file per record type");
