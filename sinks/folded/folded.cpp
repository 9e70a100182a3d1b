// SPDX-License-Identifier: Apache-2.0
//
// folded sink: the samples of every stack record (a `samples` count with `ustack` / `kstack`
// frames, as the profile probe writes them), summed per command and stack over the whole run
// and written as collapsed stacks (folded.hpp), heaviest first. The file is rewritten whole
// (through a temporary file and a rename, so a reader never sees half of it) at most every
// `rewrite_s` seconds while the run goes on, and once at the end.
#include "folded.hpp"

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

namespace procimage::sinks {

class folded_sink final : public sdk::sink {
public:
	static void validate(const std::string &text) { read(text); }

	folded_sink(const pi_host &host, const std::string &text) : sdk::sink(host), cfg_(read(text))
	{
		if (cfg_.path != "-") {
			// fail now, not at the end of the run, when the file cannot be written
			FILE *f = std::fopen(cfg_.path.c_str(), "w");
			if (!f)
				throw std::runtime_error("path: cannot open " + cfg_.path + ": " + std::strerror(errno));
			std::fclose(f);
		}
	}

	~folded_sink() override
	{
		try {
			write_out();
		} catch (const std::exception &e) {
			report_failure("final write", e.what());
		}
	}

	void write(const pi_record &r) override
	{
		const pi_field *samples = nullptr, *ustack = nullptr, *kstack = nullptr;
		for (uint32_t i = 0; i < r.nfields; i++) {
			const pi_field &f = r.fields[i];
			if (std::strcmp(f.key, "samples") == 0 && f.type == PI_FT_U64)
				samples = &f;
			else if (std::strcmp(f.key, "ustack") == 0 && f.type == PI_FT_STRV)
				ustack = &f;
			else if (std::strcmp(f.key, "kstack") == 0 && f.type == PI_FT_STRV)
				kstack = &f;
		}
		if (!samples || (!ustack && !kstack) || !samples->v.u)
			return; // not a stack record
		std::vector<std::string> u, k;
		if (ustack)
			u.assign(ustack->v.sv, ustack->v.sv + ustack->count);
		if (kstack && cfg_.kernel)
			k.assign(kstack->v.sv, kstack->v.sv + kstack->count);
		std::string comm = r.comm ? r.comm : "";
		if (cfg_.pid)
			comm += "-" + std::to_string(r.pid);
		counts_[folded::folded_stack(comm, u, k, cfg_.kernel_suffix)] += samples->v.u;
		dirty_ = true;
	}

	void flush() override
	{
		uint64_t now = sdk::boot_now_ns();
		if (dirty_ && cfg_.path != "-" && now - last_write_ns_ >= cfg_.rewrite_s * 1000000000ULL)
			write_out();
	}

private:
	struct cfg {
		std::string path;
		bool kernel = true;
		bool pid = false;
		std::string kernel_suffix;
		uint64_t rewrite_s = 10;
	};
	static cfg read(const std::string &text)
	{
		sdk::config_reader r(text);
		cfg c;
		c.path = r.get_string("path", "-");
		if (c.path.empty())
			throw sdk::config_error("path: expected a file name or -");
		c.kernel = r.get_bool("kernel", true);
		c.pid = r.get_bool("pid", false);
		c.kernel_suffix = r.get_string("kernel_suffix", "");
		c.rewrite_s = static_cast<uint64_t>(r.get_int("rewrite_s", 10, 1, 86400));
		r.finish();
		return c;
	}

	void write_out()
	{
		last_write_ns_ = sdk::boot_now_ns();
		if (!dirty_ && written_once_)
			return;
		std::vector<std::pair<const std::string *, uint64_t>> lines;
		lines.reserve(counts_.size());
		for (const auto &[s, n] : counts_)
			lines.emplace_back(&s, n);
		std::sort(lines.begin(), lines.end(), [](const auto &a, const auto &b) {
			return a.second != b.second ? a.second > b.second : *a.first < *b.first;
		});
		std::string text;
		for (const auto &[s, n] : lines)
			text += *s + " " + std::to_string(n) + "\n";
		if (cfg_.path == "-") {
			if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
				throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
		} else {
			std::string tmp = cfg_.path + ".tmp";
			FILE *f = std::fopen(tmp.c_str(), "w");
			if (!f)
				throw std::runtime_error("cannot open " + tmp + ": " + std::strerror(errno));
			bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
			ok = (std::fclose(f) == 0) && ok;
			if (!ok || std::rename(tmp.c_str(), cfg_.path.c_str()) != 0) {
				int e = errno;
				std::remove(tmp.c_str());
				throw std::runtime_error("cannot write " + cfg_.path + ": " + std::strerror(e));
			}
		}
		dirty_ = false;
		written_once_ = true;
	}

	cfg cfg_;
	std::unordered_map<std::string, uint64_t> counts_;
	bool dirty_ = false, written_once_ = false;
	uint64_t last_write_ns_ = 0;
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::folded_sink, "folded", PROCIMAGE_VERSION,
		      "collapsed stacks (comm;caller;…;leaf COUNT) for flame graphs, from the profile probe");
