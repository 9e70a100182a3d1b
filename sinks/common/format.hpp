// SPDX-License-Identifier: Apache-2.0
//
// Formatting of record values shared by the sinks: human text (stdout), JSON values (jsonl)
// and RFC 4180 CSV cells (csv).
#pragma once

#include <procimage/plugin_api.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace procimage::sinks {

// "20:45:01.123456" (local or UTC) from Unix epoch ns.
std::string clock_time(uint64_t epoch_ns, bool utc);

// A duration for humans: "850ns", "12.3µs", "4.56ms", "1.234s".
std::string human_duration(uint64_t ns);
std::string human_bytes(uint64_t bytes);
// "-ENOENT" for -2, "0" for 0.
std::string errno_name(int64_t neg_errno);
// "SIGKILL" for 9, "none" for 0.
std::string signal_name(uint64_t sig);

// The value of one field as a human reads it (stdout sink).
std::string human_value(const pi_field &f);
// A syscall sequence record (probe "syscall", event "sequence") as one readable chain, for the
// stdout sink: its scalar fields as key=value, then each call as strace writes it,
//   first=0 count=3 reason=full  read(3) = 4096 <1.2µs> → openat = -1 ENOENT <3.1µs> → …
// (the argument only when the record carries an "arg0" array). Empty for any other record, or
// when the parallel arrays disagree in length: the caller then prints the fields one by one.
std::string human_syscall_sequence(const pi_record &r);
// The value of one field as JSON text (raw numbers: the unit is in the key).
void append_json_value(std::string &out, const pi_field &f);
// The whole record as one JSON object, common keys first, no newline.
void append_record_json(std::string &out, const pi_record &r);
// The same written at dst, which has room for record_json_bound(r) bytes; returns its end.
size_t record_json_bound(const pi_record &r);
char *write_record_json(char *dst, const pi_record &r);
std::string record_json(const pi_record &r);
// One CSV cell, quoted per RFC 4180 when needed.
std::string csv_cell(const std::string &s);
void append_csv_cell(std::string &out, std::string_view s);
// The raw value of one field as text (arrays joined by a space).
std::string plain_value(const pi_field &f);
void append_plain_value(std::string &out, const pi_field &f);

} // namespace procimage::sinks
