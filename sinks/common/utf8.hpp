// SPDX-License-Identifier: Apache-2.0
// UTF-8 validation shared by the sinks: kernel strings (comm, argv, file names) are arbitrary
// bytes, and JSON and the Prometheus formats must carry valid UTF-8.
#pragma once

namespace procimage::sinks {

// Length of the well-formed UTF-8 sequence at p (p < end), or 0 when the byte at p does not
// start one: ASCII is 1; overlong forms, surrogates, code points above U+10FFFF and truncated
// sequences are 0.
inline int utf8_sequence_length(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = *p;
	if (c < 0x80)
		return 1;
	int len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
	if (c == 0xc0 || c == 0xc1 || c > 0xf4 || end - p < len)
		return 0;
	for (int i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if (len == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)))
		return 0;
	if (len == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
		return 0;
	return len;
}

// U+FFFD REPLACEMENT CHARACTER, for a byte that starts no valid sequence.
constexpr const char *UTF8_REPLACEMENT = "\xef\xbf\xbd";

} // namespace procimage::sinks
