// SPDX-License-Identifier: Apache-2.0
//
// The collapsed-stack ("folded") format that flamegraph.pl, inferno and speedscope read: one
// line per distinct stack, frames from the outermost caller to the leaf, separated by ';', then
// a space and the count:
//
//     wl-profile;_start;__libc_start_main;main;burn_cpu_here 812
//
// Stacks arrive innermost first, as the probes write them (profile's and keytime's ustack /
// kstack, frames as "function+0xoffset").
#pragma once

#include <cctype>
#include <string>
#include <vector>

namespace procimage::sinks::folded {

// A frame as a flame graph shows it: the function without its offset ("main+0x1a" → "main",
// "[libc.so.6]+0x2a1b0" → "[libc.so.6]"), "[unknown]" for a bare address. ';' would split the
// frame and a line break would end the line: both become '_'.
inline std::string frame_function(const std::string &frame)
{
	if (frame.empty() || frame.rfind("0x", 0) == 0)
		return "[unknown]";
	std::string f = frame;
	auto plus = f.rfind("+0x");
	if (plus != std::string::npos && plus > 0) {
		bool hex = plus + 3 < f.size();
		for (size_t i = plus + 3; i < f.size(); i++)
			hex = hex && std::isxdigit(static_cast<unsigned char>(f[i]));
		if (hex)
			f.resize(plus);
	}
	for (char &c : f)
		if (c == ';' || c == '\n' || c == '\r')
			c = '_';
	return f;
}

// "comm;outermost user frame;…;user leaf;outermost kernel frame;…;kernel leaf" (the user stack
// calls into the kernel). kernel_suffix, when not empty, is appended to every kernel frame
// ("_[k]" makes flamegraph.pl --color=java colour them apart).
inline std::string folded_stack(const std::string &comm, const std::vector<std::string> &ustack,
				const std::vector<std::string> &kstack, const std::string &kernel_suffix = "")
{
	std::string line = frame_function(comm.empty() ? std::string("[unknown]") : comm);
	// a frame-pointer walk through code built without frame pointers can yield a run of bare
	// addresses: they show as one [unknown]
	bool unknown = false;
	for (auto it = ustack.rbegin(); it != ustack.rend(); ++it) {
		std::string f = frame_function(*it);
		if (f == "[unknown]" && unknown)
			continue;
		unknown = f == "[unknown]";
		line += ";" + f;
	}
	for (auto it = kstack.rbegin(); it != kstack.rend(); ++it)
		line += ";" + frame_function(*it) + kernel_suffix;
	return line;
}

} // namespace procimage::sinks::folded
