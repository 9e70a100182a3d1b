// SPDX-License-Identifier: Apache-2.0
//
// The record schema: every probe declares its records (the JSON text of its descriptor's
// record_schema, format in docs/plugin-abi.md), the host adds the header every record carries
// and its own records, and joins them into one JSON Schema (2020-12) document. That document
// is what `procimage --print-schema` prints, what is installed as
// share/procimage/records.schema.json, and what sinks receive (pi_host.record_schema) to lay
// out their output.
#pragma once

#include "result.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace procimage::core::schema {

using ojson = nlohmann::ordered_json;

// The version of the record schema, "MAJOR.MINOR". MAJOR changes when a field or record is
// renamed or removed, or a field changes meaning, type or unit; MINOR when a record, a field
// or an allowed value is added. Consumers check the major part. docs/events.md.
inline constexpr const char *version = "2.1";

// The keys of the common header. A probe may not declare a field with one of these names.
const std::vector<std::string> &header_keys();

// One probe's declaration: its plugin name and the text of its record_schema (may be null).
struct declaration {
	std::string plugin;
	const char *text = nullptr;
};

// Parse and check one declaration. The error names the plugin and what is wrong.
result<ojson> parse_declaration(const std::string &plugin, const char *text);

// The host's own records (probe "procimage").
const char *host_declaration();

// Join the host's records and the given probes' into one JSON Schema document. A probe
// without a declaration gets a lenient definition (the header, then any field). Fails on a
// declaration that parse_declaration refuses.
result<ojson> join(const std::vector<declaration> &probes);

// "$defs" key of one record type.
std::string def_name(const std::string &plugin, const std::string &event);

} // namespace procimage::core::schema
