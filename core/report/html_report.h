// report.html: a self-contained page (inline SVG, no scripts, readable offline) with the run's
// final table and line charts of every numeric series in metrics.jsonl (train loss and lr over
// steps, each validation metric over steps).
#pragma once

#include <string>

namespace sculpt::report {

// Reads <run_dir>/metrics.jsonl and <run_dir>/summary.json, writes <run_dir>/report.html
// atomically. Missing inputs give a page that says so rather than an error.
void write_html_report(const std::string& run_dir, const std::string& title);

}  // namespace sculpt::report
