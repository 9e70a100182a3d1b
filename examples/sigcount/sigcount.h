/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SIGCOUNT_H
#define SIGCOUNT_H

struct sigcount_key {
	__u32 tgid;
	__u32 sig;
	__u64 start_ns; /* the process's start (group leader's start_boottime): pid_start_ns */
};

#endif
