// SPDX-License-Identifier: Apache-2.0
//
// `procimage --features`: what this kernel offers and what each probe will be on it.
#pragma once

#include <string>
#include <vector>

namespace procimage::core {

struct probe_support {
	std::string probe;
	std::string state;  // "available", "fallback" or "unavailable"
	std::string detail; // the missing feature, or the fallback taken
};

// The support of each named probe on the running kernel (from its BTF).
std::vector<probe_support> probe_support_here(const std::vector<std::string> &probes);

// Prints the kernel's features and the probes' support; returns 0.
int print_features(const std::vector<std::string> &probes);

} // namespace procimage::core
