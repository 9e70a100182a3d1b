/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SIGCOUNT_H
#define SIGCOUNT_H

struct sigcount_key {
	__u32 tgid;
	__u32 sig;
};

#endif
