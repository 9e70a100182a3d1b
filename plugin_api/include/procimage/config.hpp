// SPDX-License-Identifier: Apache-2.0
//
// Strict reading of a plugin's JSON configuration: typed getters with ranges, and unknown keys
// rejected. Every error names the key ("argv_max: expected an integer in 1..32, got 99"); the
// host prefixes the JSON path of the component ("probes.keytime.").
#pragma once

#include <procimage/sdk.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <set>
#include <string>

namespace procimage::sdk {

class config_reader {
public:
	explicit config_reader(const std::string &text)
	{
		try {
			j_ = nlohmann::json::parse(text);
		} catch (const nlohmann::json::exception &e) {
			throw config_error(std::string("invalid JSON: ") + e.what());
		}
		if (!j_.is_object())
			throw config_error("expected an object");
	}

	bool get_bool(const std::string &key, bool def)
	{
		const auto *v = find(key);
		if (!v)
			return def;
		if (!v->is_boolean())
			throw config_error(key + ": expected true or false");
		return v->get<bool>();
	}

	int64_t get_int(const std::string &key, int64_t def, int64_t min, int64_t max)
	{
		const auto *v = find(key);
		if (!v)
			return def;
		if (!v->is_number_integer())
			throw config_error(key + ": expected an integer in " + std::to_string(min) + ".." +
					   std::to_string(max));
		int64_t x = v->get<int64_t>();
		if (x < min || x > max)
			throw config_error(key + ": expected an integer in " + std::to_string(min) + ".." +
					   std::to_string(max) + ", got " + std::to_string(x));
		return x;
	}

	std::string get_string(const std::string &key, const std::string &def)
	{
		const auto *v = find(key);
		if (!v)
			return def;
		if (!v->is_string())
			throw config_error(key + ": expected a string");
		return v->get<std::string>();
	}

	std::string get_enum(const std::string &key, const std::string &def,
			     const std::set<std::string> &allowed)
	{
		std::string s = get_string(key, def);
		if (!allowed.count(s)) {
			std::string list;
			for (const auto &a : allowed)
				list += (list.empty() ? "" : ", ") + a;
			throw config_error(key + ": expected one of " + list + ", got \"" + s + "\"");
		}
		return s;
	}

	// Call after reading every key: rejects keys nobody asked for.
	void finish() const
	{
		for (const auto &[k, _] : j_.items())
			if (!seen_.count(k))
				throw config_error(k + ": unknown key");
	}

	const nlohmann::json &json() const { return j_; }

private:
	const nlohmann::json *find(const std::string &key)
	{
		seen_.insert(key);
		auto it = j_.find(key);
		return it == j_.end() ? nullptr : &*it;
	}

	nlohmann::json j_;
	std::set<std::string> seen_;
};

} // namespace procimage::sdk
