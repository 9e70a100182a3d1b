// SPDX-License-Identifier: Apache-2.0
#include "features.hpp"

#include <procimage/bpf.hpp>
#include <procimage/kernel_features.hpp>

#include <cstdio>

namespace procimage::core {

namespace sdk = procimage::sdk;

namespace {

// Where a probe takes a slower or less exact path on this kernel, say which and why.
std::string fallbacks_of(const std::string &probe)
{
	std::string out;
	auto add = [&](const std::string &s) { out += (out.empty() ? "" : "; ") + s; };
	if (probe == "keytime") {
		if (!sdk::kernel_has(sdk::KF_CURRENT_TASK_BTF))
			add("current task read through bpf_get_current_task (bpf_get_current_task_btf: Linux 5.11)");
		if (!sdk::kernel_has(sdk::KF_TASK_PT_REGS))
			add("a runnable thread switched out inside sched_yield is reported as preempted, not yield "
			    "(bpf_task_pt_regs: Linux 5.15)");
		if (sdk::tracepoint_arg_count("sched_process_exit") < 2)
			add("group_dead counted from signal->live (sched_process_exit passes it after 6.12)");
	}
	if ((probe == "schedule" || probe == "lock") && !sdk::kernel_has(sdk::KF_TASK_STORAGE))
		add("per-thread state in a hash keyed by thread id (task storage: Linux 5.11)");
	if (probe == "lock" && !sdk::kernel_has(sdk::KF_ATTACH_COOKIE))
		add("contention-only: no uprobes, so no hold times (bpf_get_attach_cookie: Linux 5.15)");
	else if (probe == "lock" && !sdk::kernel_has(sdk::KF_UPROBE_MULTI))
		add("one uprobe link per place (multi-uprobe links: Linux 6.6)");
	if (probe == "profile" && !sdk::kernel_has(sdk::KF_LARGE_HASH_KEYS))
		// 30: PR_SMALL_DEPTH in plugins/profile/profile.h
		add("stacks cut at 30 frames each, user and kernel (hash map keys over 512 bytes: Linux 5.11)");
	return out;
}

} // namespace

std::vector<probe_support> probe_support_here(const std::vector<std::string> &probes)
{
	std::vector<probe_support> out;
	for (const auto &p : probes) {
		probe_support s{p, "available", ""};
		if (auto m = sdk::missing_for(p); !m.empty()) {
			s.state = "unavailable";
			s.detail = m;
		} else if (auto f = fallbacks_of(p); !f.empty()) {
			s.state = "fallback";
			s.detail = f;
		}
		out.push_back(std::move(s));
	}
	return out;
}

int print_features(const std::vector<std::string> &probes)
{
	std::printf("kernel %s, BTF %s\n\n", sdk::kernel_release().c_str(),
		    sdk::vmlinux_btf() ? "available" : "unavailable (no /sys/kernel/btf/vmlinux: nothing can load)");
	std::printf("%-18s %-12s %-6s %s\n", "FEATURE", "HERE", "SINCE", "WHAT");
	for (const auto *f : sdk::kernel_feature_catalogue())
		std::printf("%-18s %-12s %-6s %s\n", f->id, sdk::kernel_has(*f) ? "available" : "unavailable", f->since,
			    f->what);
	std::printf("\n%-10s %-12s %s\n", "PROBE", "STATE", "DETAIL");
	for (const auto &s : probe_support_here(probes))
		std::printf("%-10s %-12s %s\n", s.probe.c_str(), s.state.c_str(), s.detail.c_str());
	return 0;
}

} // namespace procimage::core
