// SPDX-License-Identifier: Apache-2.0
//
// csv sink: RFC 4180 files, one per record type: <dir>/<probe>_<event>.csv. The columns of a
// record type come from the run's record schema (pi_host.record_schema): its properties, in
// schema order, header first. A probe that declares no schema gets the common columns plus
// the fields of its first record of that type, and a last column "extra" where a later record's
// other fields go as key=value pairs.
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
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

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
		if (host.size >= offsetof(pi_host, record_schema) + sizeof(host.record_schema) && host.record_schema)
			read_schema(host.record_schema);
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
		// one row built in buffers kept from row to row: nothing is allocated per record
		cells_.resize(f.columns.size());
		for (auto &c : cells_)
			c.clear();
		extra_.clear();
		const char *plugin = pi_record_plugin(&r);
		auto cell = [&](int column) -> std::string * { return column < 0 ? nullptr : &cells_[column]; };
		if (auto *c = cell(f.head.ts_ns))
			append_u(*c, r.ts_ns);
		if (auto *c = cell(f.head.probe))
			c->append(r.probe ? r.probe : "");
		if (auto *c = cell(f.head.plugin); c && r.probe && std::strcmp(plugin, r.probe) != 0)
			c->append(plugin);
		if (auto *c = cell(f.head.event))
			c->append(r.event ? r.event : "");
		if (auto *c = cell(f.head.pid))
			append_u(*c, r.pid);
		if (auto *c = cell(f.head.tid))
			append_u(*c, r.tid);
		if (auto *c = cell(f.head.comm))
			c->append(r.comm ? r.comm : "");
		if (auto *c = cell(f.head.cpu); c && r.cpu >= 0)
			append_u(*c, static_cast<uint32_t>(r.cpu));
		if (auto *c = cell(f.head.pid_start_ns); c && r.pid_start_ns)
			append_u(*c, r.pid_start_ns);
		if (auto *c = cell(f.head.cgroup))
			if (const char *cg = pi_record_cgroup(&r))
				c->append(cg);
		for (uint32_t i = 0; i < r.nfields; i++) {
			const char *key = r.fields[i].key ? r.fields[i].key : "";
			int column = slot(f, i, key);
			if (column >= 0) {
				cells_[column].clear(); // a key twice: the last value wins
				append_plain_value(cells_[column], r.fields[i]);
			} else if (f.extra) {
				if (!extra_.empty())
					extra_ += ' ';
				extra_.append(key).append("=");
				append_plain_value(extra_, r.fields[i]);
			} else if (undeclared_.insert(name_ + "." + key).second) {
				sdk::log(host(), PI_LOG_WARN,
					 name_ + ".csv: field '" + key +
						 "' is not in the record schema of its type; it is not written");
			}
		}
		std::string &line = line_;
		line.clear();
		for (size_t i = 0; i < cells_.size(); i++) {
			if (i)
				line += ',';
			append_csv_cell(line, cells_[i]);
		}
		if (f.extra) {
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
		bool extra = false; // a last column "extra" (types the schema does not describe)
		struct {
			int ts_ns = -1, probe = -1, plugin = -1, event = -1, pid = -1, tid = -1, comm = -1, cpu = -1,
			    pid_start_ns = -1, cgroup = -1;
		} head; // the header's columns (-1: not a column of this file)
		std::vector<int> slots; // the column of the record's i-th field, as last seen
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

	// The column of a record's i-th field: a record of a type usually has the same fields in the
	// same order, so the column found for the previous record is checked first.
	static int slot(file &f, uint32_t i, const char *key)
	{
		if (i < f.slots.size() && f.slots[i] >= 0 && f.columns[f.slots[i]] == key)
			return f.slots[i];
		auto c = f.index.find(std::string_view(key));
		int column = c == f.index.end() ? -1 : static_cast<int>(c->second);
		if (i >= f.slots.size())
			f.slots.resize(i + 1, -1);
		f.slots[i] = column;
		return column;
	}

	template <typename T> static void append_u(std::string &out, T v)
	{
		char buf[24];
		auto r = std::to_chars(buf, buf + sizeof buf, v);
		out.append(buf, r.ptr);
	}

	std::map<std::string, file, std::less<>>::iterator open(const std::string &name, const pi_record &r)
	{
		std::string path = dir_ + "/" + name + ".csv";
		FILE *fp = std::fopen(path.c_str(), "w");
		if (!fp)
			throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
		std::setvbuf(fp, nullptr, _IOFBF, 256 * 1024); // rows reach the file in large writes
		file f{fp, {}, {}};
		auto declared = columns_.find(std::string(pi_record_plugin(&r)) + "." + (r.event ? r.event : ""));
		if (declared != columns_.end()) {
			f.columns = declared->second;
		} else {
			f.columns = {"ts_ns", "probe", "plugin", "event", "pid", "tid", "comm", "cpu", "pid_start_ns", "cgroup"};
			for (uint32_t i = 0; i < r.nfields; i++)
				f.columns.emplace_back(r.fields[i].key);
			f.extra = true;
		}
		std::string header;
		for (const auto &c : f.columns) {
			f.index.emplace(c, f.index.size());
			header += (header.empty() ? "" : ",") + csv_cell(c);
		}
		header += f.extra ? ",extra\r\n" : "\r\n";
		auto column = [&](const char *key) {
			auto c = f.index.find(std::string_view(key));
			return c == f.index.end() ? -1 : static_cast<int>(c->second);
		};
		f.head.ts_ns = column("ts_ns");
		f.head.probe = column("probe");
		f.head.plugin = column("plugin");
		f.head.event = column("event");
		f.head.pid = column("pid");
		f.head.tid = column("tid");
		f.head.comm = column("comm");
		f.head.cpu = column("cpu");
		f.head.pid_start_ns = column("pid_start_ns");
		f.head.cgroup = column("cgroup");
		if (std::fwrite(header.data(), 1, header.size(), fp) != header.size()) {
			int e = errno;
			std::fclose(fp);
			throw std::runtime_error("cannot write " + path + ": " + std::strerror(e));
		}
		f.written = static_cast<off_t>(header.size());
		f.row_ends.push_back(f.written);
		return files_.emplace(name, std::move(f)).first;
	}

	// The columns of every record type the schema describes ("plugin.event" -> properties).
	void read_schema(const char *text)
	{
		auto doc = nlohmann::ordered_json::parse(text, nullptr, false);
		if (!doc.is_object() || !doc.contains("$defs") || !doc["$defs"].is_object()) {
			sdk::log(host(), PI_LOG_WARN, "the record schema could not be read: columns follow the first records");
			return;
		}
		for (const auto &[name, def] : doc["$defs"].items()) {
			if (!def.is_object() || def.value("x-undeclared", false) || !def.contains("properties"))
				continue;
			auto &cols = columns_[name];
			for (const auto &[key, _] : def["properties"].items())
				cols.push_back(key);
		}
	}

	std::string dir_;
	std::map<std::string, file, std::less<>> files_;
	std::map<std::string, std::vector<std::string>> columns_;
	std::set<std::string> undeclared_;
	std::string name_, line_, extra_; // kept from record to record
	std::vector<std::string> cells_;
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::csv_sink, "csv", PROCIMAGE_VERSION,
		      "RFC 4180 CSV, one file per record type");
