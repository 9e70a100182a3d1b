// SPDX-License-Identifier: Apache-2.0
//
// The shared activation map: the host's own BPF object (core.bpf.c) owns pi_control (one
// entry per probe slot: off / all / targets) and pi_targets (which threads and thread groups
// each slot targets). Every probe's BPF object reuses these two maps.
#pragma once

#include "pipeline.hpp"
#include "result.hpp"

#include <procimage/bpf/common.h>

#include <cstdint>
#include <memory>

struct core_bpf;

namespace procimage::core {

class activation {
public:
	activation() = default;
	activation(const activation &) = delete;
	activation &operator=(const activation &) = delete;
	~activation();

	// Load the host's BPF object (nothing attached yet).
	result<void> load(uint32_t self_tgid);
	// Attach / detach the descendant-following programs (attached while any probe is active,
	// so an inactive host adds nothing to fork and exit).
	result<void> set_following(bool on);

	int control_fd() const;
	int targets_fd() const;
	int lost_fd() const;

	// Point slot at a target and switch it on (replaces the slot's previous target).
	result<void> activate(uint32_t slot, const target_spec &t);
	// Switch slot off and drop it from every target entry.
	result<void> deactivate(uint32_t slot);

private:
	result<void> clear_slot(uint32_t slot);
	core_bpf *skel_ = nullptr;
	bool following_ = false;
	uint32_t self_tgid_ = 0;
	uint64_t generation_ = 0;
};

} // namespace procimage::core
