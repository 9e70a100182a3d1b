// SPDX-License-Identifier: Apache-2.0
//
// jsonl sink: one JSON object per line, to a file or standard output, flushed per batch.
// Lines are formatted into one buffer, handed to the file in large writes (every
// WRITE_CHUNK bytes, and at each flush).
#include "../common/format.hpp"

#include <procimage/config.hpp>
#include <procimage/sdk.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdio_ext.h>
#include <sys/stat.h>
#include <unistd.h>

namespace procimage::sinks {

class jsonl_sink final : public sdk::sink {
public:
	static void validate(const std::string &text) { read(text); }

	jsonl_sink(const pi_host &host, const std::string &text) : sdk::sink(host)
	{
		auto c = read(text);
		if (c.path.empty() || c.path == "-") {
			out_ = stdout;
		} else {
			out_ = std::fopen(c.path.c_str(), c.append ? "a+" : "w+");
			if (!out_)
				throw std::runtime_error("path: cannot open " + c.path + ": " + std::strerror(errno));
			own_ = true;
		}
	}

	~jsonl_sink() override
	{
		// the host flushes before it destroys a sink; whatever a failed flush left is dropped
		if (len_ && !failed_)
			std::fwrite(buf_.data(), 1, len_, out_);
		if (own_)
			std::fclose(out_);
		else
			std::fflush(out_);
	}

	void write(const pi_record &r) override
	{
		// buf_ is room, len_ what is used of it: it grows (and is zeroed) only when a record
		// needs more than is left
		size_t need = record_json_bound(r) + 1;
		if (buf_.size() - len_ < need)
			buf_.resize(std::max(2 * buf_.size(), len_ + need + WRITE_CHUNK));
		char *end = write_record_json(buf_.data() + len_, r);
		*end++ = '\n';
		len_ = static_cast<size_t>(end - buf_.data());
		if (len_ >= WRITE_CHUNK)
			write_out();
	}

	void flush() override
	{
		write_out();
		if (std::fflush(out_) != 0)
			fail("flush failed: ");
	}

private:
	static constexpr size_t WRITE_CHUNK = 256 * 1024;

	void write_out()
	{
		if (!len_)
			return;
		bool ok = std::fwrite(buf_.data(), 1, len_, out_) == len_;
		len_ = 0;
		if (!ok)
			fail("write failed: ");
	}

	// A failed write (a full disk) may have left part of a record in the file: drop what stdio
	// still holds, so that closing writes nothing more, and cut the file back to the end of its
	// last whole line, so that every line in it stays one complete JSON object.
	[[noreturn]] void fail(const char *what)
	{
		int err = errno;
		failed_ = true;
		len_ = 0;
		__fpurge(out_);
		std::string msg = std::string(what) + std::strerror(err);
		if (own_ && !trim_to_last_line())
			msg += " (and the file could not be cut back to its last whole record)";
		throw std::runtime_error(msg);
	}

	bool trim_to_last_line()
	{
		int fd = fileno(out_);
		struct stat st{};
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
			return false;
		off_t end = st.st_size;
		char buf[4096];
		while (end > 0) {
			off_t start = end > off_t(sizeof buf) ? end - off_t(sizeof buf) : 0;
			ssize_t n = pread(fd, buf, size_t(end - start), start);
			if (n != end - start)
				return false;
			for (ssize_t i = n; i > 0; --i)
				if (buf[i - 1] == '\n')
					return ftruncate(fd, start + i) == 0;
			end = start;
		}
		return ftruncate(fd, 0) == 0;
	}

	struct cfg {
		std::string path;
		bool append;
	};
	static cfg read(const std::string &text)
	{
		sdk::config_reader r(text);
		cfg c;
		c.path = r.get_string("path", "-");
		c.append = r.get_bool("append", false);
		r.finish();
		return c;
	}

	FILE *out_ = nullptr;
	bool own_ = false;
	bool failed_ = false;
	std::string buf_; // whole lines not yet handed to the file (its first len_ bytes), kept from
	size_t len_ = 0;  // record to record: no allocation per record
};

} // namespace procimage::sinks

PROCIMAGE_DEFINE_SINK(procimage::sinks::jsonl_sink, "jsonl", PROCIMAGE_VERSION,
		      "one JSON object per line (file or standard output)");
