// SPDX-License-Identifier: Apache-2.0
// The test runner: Catch2's, with one more exit status. Catch's own status is kept (0, or the
// number of failed assertions) except that a count equal to PROCIMAGE_TEST_SKIP_CODE becomes 1;
// PROCIMAGE_TEST_SKIP_CODE means nothing failed and a case skipped (SKIP_TEST, support.hpp),
// which ctest shows as skipped, not passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "support.hpp"

#include <cstdio>

int main(int argc, char *argv[])
{
	int failed = Catch::Session().run(argc, argv);
	// Every record a test read must match the record schema (docs/events.md).
	if (failed == 0 && procimage::test::check_records_against_schema() != 0)
		failed = 1;
	if (failed != 0)
		return failed == PROCIMAGE_TEST_SKIP_CODE ? 1 : failed;
	const auto &skipped = procimage::test::skipped_cases();
	if (skipped.empty())
		return 0;
	std::printf("%zu test case%s skipped:\n", skipped.size(), skipped.size() == 1 ? "" : "s");
	for (const auto &name : skipped)
		std::printf("  %s\n", name.c_str());
	return PROCIMAGE_TEST_SKIP_CODE;
}
