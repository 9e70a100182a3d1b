// SPDX-License-Identifier: Apache-2.0
//
// procimage report [--format text|json|chrome-trace|html] [-o FILE] RUN.jsonl
#include "model.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

namespace procimage::report {

static const char *REPORT_USAGE =
	"Usage: procimage report [--format text|json|chrome-trace|html] [-o FILE] RUN.jsonl\n"
	"Reads a run recorded with -o jsonl:RUN.jsonl and renders its portrait (default: text to\n"
	"standard output). Lines of collapsed stacks (-o folded:PATH, or another profiler's) are read\n"
	"too: the HTML page draws them as a flame graph. Without --format, FILE's extension chooses: .html html, .trace.json or\n"
	".perfetto.json chrome-trace, .json json, any other text. '-' reads standard input.\n"
	"Exit status: 0, 1 when the output cannot be written, 2 on a bad command line or input.\n";

std::string format_from_path(const std::string &path)
{
	auto ends = [&](const char *s) {
		std::string x(s);
		return path.size() >= x.size() && path.compare(path.size() - x.size(), x.size(), x) == 0;
	};
	if (ends(".html") || ends(".htm"))
		return "html";
	if (ends(".trace.json") || ends(".perfetto.json") || ends(".trace"))
		return "chrome-trace";
	if (ends(".json"))
		return "json";
	return "text";
}

std::string render(const model &m, const std::string &format)
{
	if (format == "json")
		return render_json(m).dump(1) + "\n";
	if (format == "chrome-trace")
		return render_chrome_trace(m) + "\n";
	if (format == "html")
		return render_html(m);
	return render_text(m);
}

bool known_format(const std::string &f) { return f == "text" || f == "json" || f == "chrome-trace" || f == "html"; }

int report_main(int argc, char **argv)
{
	std::string format, out, in;
	for (int i = 1; i < argc; i++) {
		std::string a = argv[i];
		auto value = [&](const char *what) -> std::string {
			if (i + 1 >= argc)
				throw std::invalid_argument(std::string(what) + " needs a value");
			return argv[++i];
		};
		if (a == "-h" || a == "--help") {
			std::cout << REPORT_USAGE;
			return 0;
		} else if (a == "--format" || a == "-f")
			format = value("--format");
		else if (a.rfind("--format=", 0) == 0)
			format = a.substr(9);
		else if (a == "-o" || a == "--output")
			out = value("-o");
		else if (a.size() > 1 && a[0] == '-' && a != "-")
			throw std::invalid_argument("unknown option " + a);
		else if (!in.empty())
			throw std::invalid_argument("one recorded run only (got " + in + " and " + a + ")");
		else
			in = a;
	}
	if (in.empty())
		throw std::invalid_argument("the recorded run (RUN.jsonl) is missing");
	if (format.empty())
		format = out.empty() ? "text" : format_from_path(out);
	if (!known_format(format))
		throw std::invalid_argument("unknown format '" + format + "' (text, json, chrome-trace or html)");
	model m;
	if (in == "-")
		m = read_jsonl(std::cin);
	else {
		std::ifstream f(in);
		if (!f)
			throw std::invalid_argument("cannot read " + in + ": " + std::strerror(errno));
		m = read_jsonl(f);
	}
	if (m.records == 0)
		throw std::invalid_argument(in + ": no records (" + std::to_string(m.unreadable) + " unreadable lines)");
	auto text = render(m, format);
	if (out.empty() || out == "-") {
		std::cout << text << std::flush;
		return std::cout ? 0 : 1;
	}
	std::ofstream o(out, std::ios::binary);
	o << text;
	o.close();
	if (!o) {
		std::cerr << "procimage report: cannot write " << out << ": " << std::strerror(errno) << "\n";
		return 1;
	}
	return 0;
}

int report_command(int argc, char **argv)
{
	try {
		return report_main(argc, argv);
	} catch (const std::invalid_argument &e) {
		std::cerr << "procimage report: " << e.what() << " (see procimage report --help)\n";
		return 2;
	} catch (const std::exception &e) {
		std::cerr << "procimage report: " << e.what() << "\n";
		return 1;
	}
}

} // namespace procimage::report
