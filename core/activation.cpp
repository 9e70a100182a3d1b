// SPDX-License-Identifier: Apache-2.0
#include "activation.hpp"

#include "core.skel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace procimage::core {

activation::~activation() { core_bpf__destroy(skel_); }

static std::string err_text(int e) { return std::strerror(e < 0 ? -e : e); }

result<void> activation::load(uint32_t self_tgid)
{
	self_tgid_ = self_tgid;
	skel_ = core_bpf__open();
	if (!skel_)
		return runtime_error("cannot open the host's BPF object: " + err_text(errno));
	int err = core_bpf__load(skel_);
	if (err)
		return runtime_error("cannot load the host's BPF object: " + err_text(err));
	return {};
}

result<void> activation::set_following(bool on)
{
	if (on == following_)
		return {};
	if (on) {
		int err = core_bpf__attach(skel_);
		if (err)
			return runtime_error("cannot attach the host's fork/free tracepoints: " + err_text(err));
	} else {
		core_bpf__detach(skel_);
	}
	following_ = on;
	return {};
}

int activation::control_fd() const { return bpf_map__fd(skel_->maps.pi_control); }
int activation::targets_fd() const { return bpf_map__fd(skel_->maps.pi_targets); }
int activation::lost_fd() const { return bpf_map__fd(skel_->maps.pi_lost); }

result<void> activation::clear_slot(uint32_t slot)
{
	uint64_t bit = 1ULL << slot;
	int fd = targets_fd();
	pi_target_key key{}, next{};
	std::vector<pi_target_key> keys;
	void *prev = nullptr;
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		keys.push_back(next);
		key = next;
		prev = &key;
	}
	for (const auto &k : keys) {
		if (k.kind == PI_TK_CGROUP) {
			// keyed by slot; its value is a pi_cgroup_target, not slot bits
			if (k.id == slot)
				bpf_map_delete_elem(fd, &k);
			continue;
		}
		pi_target_val v{};
		if (bpf_map_lookup_elem(fd, &k, &v) != 0)
			continue;
		if (!((v.slots | v.follow_slots) & bit))
			continue;
		v.slots &= ~bit;
		v.follow_slots &= ~bit;
		if (v.slots == 0 && v.follow_slots == 0)
			bpf_map_delete_elem(fd, &k);
		else
			bpf_map_update_elem(fd, &k, &v, BPF_EXIST);
	}
	return {};
}

result<void> activation::activate(uint32_t slot, const target_spec &t)
{
	if (slot >= PI_MAX_SLOTS)
		return runtime_error("probe slot " + std::to_string(slot) + " out of range");
	// Off first, so no event is collected for a half-written target (the host has usually
	// switched it off already: then there is nothing to clear).
	pi_control cur{};
	if (bpf_map_lookup_elem(control_fd(), &slot, &cur) != 0 || cur.mode != PI_MODE_OFF) {
		if (auto r = deactivate(slot); !r)
			return r;
	}
	uint64_t bit = 1ULL << slot;
	pi_control c{};
	c.self_tgid = self_tgid_;
	c.include_self = t.include_self ? 1 : 0;
	c.idle_cpu = t.idle_cpu;
	c.generation = ++generation_;
	c.mode = t.kind == target_spec::kind_t::all	 ? PI_MODE_ALL
		 : t.kind == target_spec::kind_t::cgroup ? PI_MODE_CGROUP
							 : PI_MODE_TARGETS;
	if (t.kind == target_spec::kind_t::cgroup) {
		if (!t.cgroup_id)
			return runtime_error("cgroup target " + t.cgroup_query + " was not resolved to a cgroup id");
		static_assert(sizeof(pi_cgroup_target) == sizeof(pi_target_val));
		pi_target_key k{slot, (uint32_t)PI_TK_CGROUP};
		pi_cgroup_target v{};
		v.cgroup_id = t.cgroup_id;
		v.min_level = t.cgroup_min_level;
		if (bpf_map_update_elem(targets_fd(), &k, &v, BPF_ANY) != 0)
			return runtime_error("cannot add the cgroup target " + t.cgroup_dir + ": " + err_text(errno));
	} else if (t.kind != target_spec::kind_t::all) {
		for (uint32_t id : t.ids) {
			if (id == 0)
				continue; // the idle task is matched by idle_cpu
			pi_target_key k{id, t.kind == target_spec::kind_t::tid ? (uint32_t)PI_TK_TID
									     : (uint32_t)PI_TK_TGID};
			pi_target_val v{};
			bpf_map_lookup_elem(targets_fd(), &k, &v);
			v.slots |= bit;
			if (t.follow)
				v.follow_slots |= bit;
			if (bpf_map_update_elem(targets_fd(), &k, &v, BPF_ANY) != 0)
				return runtime_error("cannot add target " + std::to_string(id) + ": " + err_text(errno));
		}
	}
	if (bpf_map_update_elem(control_fd(), &slot, &c, BPF_ANY) != 0)
		return runtime_error("cannot activate probe slot " + std::to_string(slot) + ": " + err_text(errno));
	return {};
}

result<void> activation::deactivate(uint32_t slot)
{
	pi_control c{};
	c.self_tgid = self_tgid_;
	c.idle_cpu = -1;
	c.mode = PI_MODE_OFF;
	if (bpf_map_update_elem(control_fd(), &slot, &c, BPF_ANY) != 0)
		return runtime_error("cannot deactivate probe slot " + std::to_string(slot) + ": " + err_text(errno));
	return clear_slot(slot);
}

} // namespace procimage::core
