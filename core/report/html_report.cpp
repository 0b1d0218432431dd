#include "core/report/html_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/io/atomic_file.h"

namespace sculpt::report {

namespace {

using Series = std::vector<std::pair<double, double>>;  // (step, value)

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// One line chart: axes with min/max labels, the series as a polyline.
std::string svg_chart(const std::string& title, const Series& s) {
  const double w = 420, h = 200, left = 56, bottom = 28, top = 24, right = 12;
  double x0 = s.front().first, x1 = s.back().first, y0 = s.front().second, y1 = y0;
  for (const auto& [x, y] : s) {
    x0 = std::min(x0, x);
    x1 = std::max(x1, x);
    y0 = std::min(y0, y);
    y1 = std::max(y1, y);
  }
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + (y0 == 0 ? 1 : std::fabs(y0) * 0.1);
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (w - left - right); };
  auto py = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * (h - top - bottom); };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h << "'>"
    << "<text x='" << left << "' y='16' font-size='13' font-weight='bold'>" << escape(title)
    << "</text>"
    << "<rect x='" << left << "' y='" << top << "' width='" << (w - left - right) << "' height='"
    << (h - top - bottom) << "' fill='none' stroke='#bbb'/>"
    << "<text x='" << left - 4 << "' y='" << top + 10 << "' font-size='10' text-anchor='end'>"
    << num(y1) << "</text>"
    << "<text x='" << left - 4 << "' y='" << h - bottom << "' font-size='10' text-anchor='end'>"
    << num(y0) << "</text>"
    << "<text x='" << left << "' y='" << h - 10 << "' font-size='10'>step " << num(x0) << "</text>"
    << "<text x='" << w - right << "' y='" << h - 10 << "' font-size='10' text-anchor='end'>"
    << num(x1) << "</text>"
    << "<polyline fill='none' stroke='#1f77b4' stroke-width='1.5' points='";
  for (const auto& [x, y] : s) o << num(px(x)) << "," << num(py(y)) << " ";
  o << "'/></svg>";
  return o.str();
}

}  // namespace

// Continual learning: the accuracy matrix R[i][j] as a table shaded from red (0) to green (1),
// then the averaged metrics.
static std::string continual_heatmap(const nlohmann::json& c) {
  std::ostringstream h;
  const auto& names = c.value("increments", nlohmann::json::array());
  h << "<h2>Continual learning (" << escape(c.value("scenario", std::string())) << ")</h2>"
    << "<p>R[i][j]: " << escape(c.value("metric", std::string("accuracy")))
    << " on increment j (column) after training increment i (row).</p><table><tr><th></th>";
  for (const auto& n : names) h << "<th>" << escape(n.get<std::string>()) << "</th>";
  h << "</tr>";
  const auto& m = c.value("accuracy_matrix", nlohmann::json::array());
  for (size_t i = 0; i < m.size(); ++i) {
    h << "<tr><th>" << (i < names.size() ? escape(names[i].get<std::string>()) : "") << "</th>";
    for (const auto& v : m[i]) {
      if (!v.is_number()) {
        h << "<td></td>";
        continue;
      }
      const double x = std::clamp(v.get<double>(), 0.0, 1.0);
      const int hue = static_cast<int>(120 * x);  // 0 red .. 120 green
      h << "<td style='background:hsl(" << hue << ",70%,75%)'>" << num(v.get<double>())
        << "</td>";
    }
    h << "</tr>";
  }
  h << "</table><table><tr><th>metric</th><th>value</th></tr>";
  for (const char* k :
       {"average_accuracy", "bwt", "fwt", "forgetting", "forgetting_from_best"})
    if (c.contains(k) && c[k].is_number())
      h << "<tr><td>" << k << "</td><td>" << num(c[k].get<double>()) << "</td></tr>";
  h << "</table>";
  // Per slice (the documents of each increment): the metric after the last increment with its
  // queries and 95% interval, right after its own increment, and the forgetting.
  const auto& slices = c.value("slices", nlohmann::json::array());
  if (!slices.empty()) {
    auto cell = [](const nlohmann::json& s, const char* k) {
      return s.contains(k) && s[k].is_number() ? num(s[k].get<double>()) : std::string();
    };
    h << "<h3>Per slice</h3><table><tr><th>slice</th><th>queries</th><th>final</th>"
      << "<th>95% interval</th><th>after its increment</th><th>forgetting</th></tr>";
    for (const auto& s : slices)
      h << "<tr><td>" << escape(s.value("name", std::string())) << "</td><td>"
        << s.value("n", int64_t{0}) << "</td><td>" << cell(s, "value") << "</td><td>"
        << (s.contains("lo") ? "[" + cell(s, "lo") + ", " + cell(s, "hi") + "]" : "")
        << "</td><td>" << cell(s, "learned") << "</td><td>" << cell(s, "forgetting")
        << "</td></tr>";
    h << "</table>";
  }
  return h.str();
}

void write_html_report(const std::string& run_dir, const std::string& title) {
  namespace fs = std::filesystem;
  std::map<std::string, Series> series;  // "train loss", "val accuracy", ...
  std::ifstream metrics(fs::path(run_dir) / "metrics.jsonl");
  std::string line;
  while (std::getline(metrics, line)) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      continue;  // a torn last line of an interrupted run
    }
    if (!j.contains("step") || !j.contains("split")) continue;
    const double step = j["step"].get<double>();
    for (const auto& [k, v] : j.items()) {
      if (k == "step" || k == "epoch" || k == "elapsed_s" || !v.is_number()) continue;
      const double x = v.get<double>();
      if (std::isfinite(x)) series[j["split"].get<std::string>() + " " + k].emplace_back(step, x);
    }
  }
  std::ostringstream html;
  html << "<!doctype html><html><head><meta charset='utf-8'><title>" << escape(title)
       << "</title><style>body{font-family:sans-serif;margin:24px}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
          ".charts{display:flex;flex-wrap:wrap;gap:12px}</style></head><body><h1>"
       << escape(title) << "</h1>";
  std::ifstream sum_in(fs::path(run_dir) / "summary.json");
  nlohmann::json summary;
  try {
    if (sum_in) sum_in >> summary;
  } catch (const std::exception&) {
  }
  if (summary.contains("final")) {
    html << "<h2>Final metrics</h2><table><tr><th>split</th><th>metric</th><th>value</th></tr>";
    for (const auto& [split, m] : summary["final"].items())
      for (const auto& [k, v] : m.items())
        html << "<tr><td>" << escape(split) << "</td><td>" << escape(k) << "</td><td>"
             << (v.is_number() ? num(v.get<double>()) : "n/a (not finite)") << "</td></tr>";
    html << "</table><p>steps " << summary.value("steps", 0) << ", time "
         << num(summary.value("time_s", 0.0)) << " s, parameters "
         << summary["model"].value("params", 0) << " (" << summary["model"].value("bytes", 0)
         << " bytes)</p>";
  } else {
    html << "<p>No summary.json yet (the run is unfinished or was interrupted).</p>";
  }
  if (summary.contains("compression")) {
    html << "<h2>Compression</h2>";
    for (const auto& item : summary["compression"])
      html << "<h3>" << escape(item.value("pass", "")) << "</h3><pre>"
           << escape(item.contains("summary") ? item["summary"].dump(2) : "{}") << "</pre>";
  }
  if (summary.contains("continual")) html << continual_heatmap(summary["continual"]);
  html << "<h2>Over steps</h2><div class='charts'>";
  // A pass may chart series of its own: summary "charts": {"<name>": [[step, value], ...]}.
  if (summary.contains("compression"))
    for (const auto& item : summary["compression"]) {
      if (!item.contains("summary") || !item["summary"].contains("charts")) continue;
      for (const auto& [name, points] : item["summary"]["charts"].items()) {
        Series s;
        for (const auto& p : points)
          if (p.is_array() && p.size() == 2 && p[0].is_number() && p[1].is_number())
            s.emplace_back(p[0].get<double>(), p[1].get<double>());
        if (!s.empty()) html << svg_chart(item.value("pass", "") + " " + name, s);
      }
    }
  for (const auto& [name, s] : series)
    if (!s.empty() && name.find("samples_per_s") == std::string::npos &&
        name.find("skipped_steps") == std::string::npos)
      html << svg_chart(name, s);
  html << "</div></body></html>\n";
  io::write_file_atomic((fs::path(run_dir) / "report.html").string(), html.str());
}

}  // namespace sculpt::report
