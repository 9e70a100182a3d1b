// SPDX-License-Identifier: Apache-2.0
//
// Finding and loading plugin shared objects (Boost.DLL), with the ABI version check.
#pragma once

#include "result.hpp"

#include <procimage/plugin_api.h>

#include <boost/dll/shared_library.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace procimage::core {

struct loaded_plugin {
	std::string path;
	boost::dll::shared_library lib;
	const pi_plugin_desc *desc = nullptr;

	std::string name() const { return desc && desc->name ? desc->name : path; }
	std::string version() const { return desc && desc->version ? desc->version : "?"; }
	// The probe's declared records (ABI >= 1.2), or null.
	const char *record_schema() const
	{
		if (!desc || desc->size < offsetof(pi_plugin_desc, record_schema) + sizeof(desc->record_schema))
			return nullptr;
		return desc->record_schema;
	}
};

using plugin_ptr = std::shared_ptr<loaded_plugin>;

// "probe_<name>.so" or "sink_<name>.so"
std::string plugin_file_name(pi_plugin_kind kind, const std::string &name);
const char *kind_name(uint32_t kind);

// Load one .so and check its descriptor: kind, sizes and ABI version.
result<plugin_ptr> load_plugin(const std::string &path);
// A directory given for plugins: it exists, is a directory, and can be read (else exit 2).
result<void> check_plugin_dir(const std::string &dir);

// Find a plugin by name in the directories (first match), or load it by path.
result<plugin_ptr> find_plugin(pi_plugin_kind kind, const std::string &name_or_path,
			       const std::vector<std::string> &dirs);

// The default search directories after the user's own: $PROCIMAGE_PLUGIN_PATH, the build
// tree's plugins/ next to the executable, and the install's lib/procimage/plugins.
std::vector<std::string> default_plugin_dirs();

struct plugin_listing {
	std::string path;
	plugin_ptr plugin; // null when it could not be loaded
	std::string problem;
};
std::vector<plugin_listing> list_plugins(const std::vector<std::string> &dirs);

} // namespace procimage::core
