// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: the libc functions it probes (what each does, the BPF cookie it is
// attached with) and the names its records give to functions, lock types and futex commands.
#pragma once

#include "lock.h"

#include <cstdint>

namespace procimage::lock {

struct func_def {
	const char *name;
	uint32_t op;
	// BLOCKING: a lock function that returns only once it has the lock; without lock_return
	// it gets no return probe (LK_CK_LOCK_NORET)
	enum { LOCK, BLOCKING, COND, UNLOCK } role;
};

inline const func_def FUNCS[] = {
	{"pthread_mutex_lock", LK_OP_MUTEX_LOCK, func_def::BLOCKING},
	{"pthread_mutex_trylock", LK_OP_MUTEX_TRYLOCK, func_def::LOCK},
	{"pthread_mutex_timedlock", LK_OP_MUTEX_TIMEDLOCK, func_def::LOCK},
	{"pthread_mutex_clocklock", LK_OP_MUTEX_CLOCKLOCK, func_def::LOCK},
	{"pthread_rwlock_rdlock", LK_OP_RW_RDLOCK, func_def::BLOCKING},
	{"pthread_rwlock_tryrdlock", LK_OP_RW_TRYRDLOCK, func_def::LOCK},
	{"pthread_rwlock_timedrdlock", LK_OP_RW_TIMEDRDLOCK, func_def::LOCK},
	{"pthread_rwlock_clockrdlock", LK_OP_RW_CLOCKRDLOCK, func_def::LOCK},
	{"pthread_rwlock_wrlock", LK_OP_RW_WRLOCK, func_def::BLOCKING},
	{"pthread_rwlock_trywrlock", LK_OP_RW_TRYWRLOCK, func_def::LOCK},
	{"pthread_rwlock_timedwrlock", LK_OP_RW_TIMEDWRLOCK, func_def::LOCK},
	{"pthread_rwlock_clockwrlock", LK_OP_RW_CLOCKWRLOCK, func_def::LOCK},
	{"pthread_spin_lock", LK_OP_SPIN_LOCK, func_def::LOCK},
	{"pthread_spin_trylock", LK_OP_SPIN_TRYLOCK, func_def::LOCK},
	{"pthread_cond_wait", LK_OP_COND_WAIT, func_def::COND},
	{"pthread_cond_timedwait", LK_OP_COND_TIMEDWAIT, func_def::COND},
	{"pthread_cond_clockwait", LK_OP_COND_CLOCKWAIT, func_def::COND},
	{"pthread_mutex_unlock", LK_OP_MUTEX_UNLOCK, func_def::UNLOCK},
	{"pthread_rwlock_unlock", LK_OP_RW_UNLOCK, func_def::UNLOCK},
	{"pthread_spin_unlock", LK_OP_SPIN_UNLOCK, func_def::UNLOCK},
};

inline const char *op_name(uint32_t op)
{
	for (const auto &f : FUNCS)
		if (f.op == op)
			return f.name;
	return "unknown";
}

inline const char *type_name(uint32_t t)
{
	switch (t) {
	case LK_TYPE_MUTEX: return "mutex";
	case LK_TYPE_RWLOCK_READ: return "rwlock_read";
	case LK_TYPE_RWLOCK_WRITE: return "rwlock_write";
	case LK_TYPE_SPIN: return "spin";
	default: return "unknown";
	}
}

inline const char *futex_cmd_name(uint32_t c)
{
	switch (c) {
	case 0: return "FUTEX_WAIT";
	case 1: return "FUTEX_WAKE";
	case 3: return "FUTEX_REQUEUE";
	case 4: return "FUTEX_CMP_REQUEUE";
	case 5: return "FUTEX_WAKE_OP";
	case 6: return "FUTEX_LOCK_PI";
	case 7: return "FUTEX_UNLOCK_PI";
	case 9: return "FUTEX_WAIT_BITSET";
	case 10: return "FUTEX_WAKE_BITSET";
	case 11: return "FUTEX_WAIT_REQUEUE_PI";
	case 13: return "FUTEX_LOCK_PI2";
	default: return "FUTEX_OTHER";
	}
}

} // namespace procimage::lock
