// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the pipeline parser (text → JSON → pipeline) and the --set parser. The
// first byte chooses which; the rest is the input. Any abort or sanitizer report is a bug.
#include "pipeline.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	std::string text(reinterpret_cast<const char *>(data) + 1, size - 1);
	if (data[0] % 4 == 0) {
		(void)procimage::core::parse_set_flag(text);
		return 0;
	}
	// pipeline files are seeded from examples/pipelines/ (their first byte picks this branch)
	std::string doc(reinterpret_cast<const char *>(data), size);
	auto j = procimage::core::parse_json_text(doc);
	if (j) {
		auto p = procimage::core::parse_pipeline(*j, "/nonexistent");
		if (p)
			(void)p->to_json().dump();
	}
	return 0;
}
