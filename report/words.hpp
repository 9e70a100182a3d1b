// SPDX-License-Identifier: Apache-2.0
//
// Figures as words, shared by the renderers: "not collected" for what the run did not collect.
#pragma once

#include "model.hpp"

#include <cstdio>
#include <string>

namespace procimage::report {

inline const char *NOT_COLLECTED = "not collected";

inline std::string dur(double ns)
{
	char b[32];
	if (ns >= 1e9)
		std::snprintf(b, sizeof b, "%.2f s", ns / 1e9);
	else if (ns >= 1e6)
		std::snprintf(b, sizeof b, "%.2f ms", ns / 1e6);
	else if (ns >= 1e3)
		std::snprintf(b, sizeof b, "%.1f us", ns / 1e3);
	else
		std::snprintf(b, sizeof b, "%.0f ns", ns);
	return b;
}
inline std::string dur(const opt_u64 &v) { return v ? dur(double(*v)) : NOT_COLLECTED; }
inline std::string dur(const std::optional<double> &v) { return v ? dur(*v) : NOT_COLLECTED; }

inline std::string bytes(const opt_u64 &v)
{
	if (!v)
		return NOT_COLLECTED;
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double x = double(*v);
	int i = 0;
	while (x >= 1024 && i < 4)
		x /= 1024, i++;
	char b[32];
	std::snprintf(b, sizeof b, i ? "%.1f %s" : "%.0f %s", x, u[i]);
	return b;
}
inline std::string num(const opt_u64 &v) { return v ? std::to_string(*v) : NOT_COLLECTED; }
inline std::string pct(const std::optional<double> &v)
{
	if (!v)
		return NOT_COLLECTED;
	char b[32];
	std::snprintf(b, sizeof b, "%.1f%%", *v);
	return b;
}
inline std::string how_ended(const process_model &p)
{
	if (!p.ended)
		return "still running (or exit not collected)";
	if (p.ended->signal && *p.ended->signal)
		return "killed by signal " + std::to_string(*p.ended->signal) + (p.ended->core ? ", core dumped" : "");
	return "exit code " + std::to_string(p.ended->code.value_or(0));
}

} // namespace procimage::report
