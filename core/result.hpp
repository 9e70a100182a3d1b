// SPDX-License-Identifier: Apache-2.0
//
// Errors inside the host are values with context, not exceptions.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace procimage::core {

// Process exit codes of procimage (documented in --help and docs/).
enum exit_code : int {
	EXIT_OK_CODE = 0,
	EXIT_RUNTIME = 1,   // a probe or sink failed at run time, or the kernel refused something
	EXIT_USAGE = 2,     // bad command line or pipeline (nothing was loaded)
	EXIT_PRIVILEGE = 3, // missing root / CAP_BPF + CAP_PERFMON + CAP_DAC_READ_SEARCH
};

struct error {
	std::string msg;
	int code = EXIT_RUNTIME;

	// "ctx: msg"
	error context(const std::string &ctx) const { return {ctx + ": " + msg, code}; }
};

template <typename T> class result {
public:
	result(T v) : v_(std::move(v)) {}
	result(error e) : v_(std::move(e)) {}

	bool ok() const { return v_.index() == 0; }
	explicit operator bool() const { return ok(); }
	T &value() { return std::get<0>(v_); }
	const T &value() const { return std::get<0>(v_); }
	T &operator*() { return value(); }
	T *operator->() { return &value(); }
	const error &err() const { return std::get<1>(v_); }

private:
	std::variant<T, error> v_;
};

template <> class result<void> {
public:
	result() = default;
	result(error e) : e_(std::move(e)), ok_(false) {}
	bool ok() const { return ok_; }
	explicit operator bool() const { return ok_; }
	const error &err() const { return e_; }

private:
	error e_;
	bool ok_ = true;
};

inline error usage_error(std::string msg) { return {std::move(msg), EXIT_USAGE}; }
inline error runtime_error(std::string msg) { return {std::move(msg), EXIT_RUNTIME}; }

} // namespace procimage::core
