// Compiled part of include/clprompt/io/svg_plot.hpp: the accuracy heat map and curves.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <string_view>

#include <fmt/format.h>


#include "clprompt/io/atomic_file.hpp"
#include "clprompt/io/svg_plot.hpp"

namespace clprompt {
namespace detail {
namespace {

namespace fs = std::filesystem;

// ---- SVG --------------------------------------------------------------------------------------

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters other than tab and newlines are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') out += ' ';
        else out += c;
    }
  }
  return out;
}

// Rough text width for layout (no font metrics without a font): ~0.6 em per character.
double text_width(std::string_view text, double font_size) {
  size_t chars = 0;
  for (char c : text) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // count UTF-8 code points
  return 0.6 * font_size * static_cast<double>(chars);
}

// White (0 %) to dark blue (100 %), clamped.
std::string heat_color(double value) {
  const double t = std::clamp(value / 100.0, 0.0, 1.0);
  auto mix = [&](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * t)); };
  return fmt::format("#{:02x}{:02x}{:02x}", mix(247, 8), mix(251, 48), mix(255, 107));
}

constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string task_label(const AccuracyPlot& plot, size_t i) {
  return i < plot.task_labels.size() && !plot.task_labels[i].empty() ? plot.task_labels[i] : fmt::format("T{}", i + 1);
}

struct Panel {
  std::string body;
  double width = 0, height = 0;
};

Panel heatmap_panel(const AccuracyPlot& plot) {
  const size_t n = plot.matrix.size();
  Panel p;
  const double cell = n == 0 ? 40.0 : std::clamp(440.0 / static_cast<double>(n), 16.0, 56.0);
  const double font = std::clamp(cell * 0.3, 6.0, 12.0);
  const double label_font = 11;
  double row_label_width = 0, col_label_height = 0;
  for (size_t i = 0; i < n; ++i) {
    row_label_width = std::max(row_label_width, text_width("after " + task_label(plot, i), label_font));
    col_label_height = std::max(col_label_height, text_width(task_label(plot, i), label_font));
  }
  // Column labels are turned 45 degrees so long ones do not overlap.
  const double left = 10 + row_label_width + 8, top = 44 + col_label_height * 0.71 + 8;
  const std::string title = "Accuracy on task j after task t (%)";
  // Room for the last column label, which leans to the right, and for the panel title.
  p.width = std::max(left + cell * static_cast<double>(n) + std::max(20.0, col_label_height * 0.71 - cell / 2 + 10),
                     10 + text_width(title, 13) + 10);
  p.height = top + cell * static_cast<double>(n) + 30;
  std::string& s = p.body;
  s += fmt::format("<text x=\"10\" y=\"22\" font-size=\"13\" font-weight=\"bold\">{}</text>\n", title);
  if (n == 0) {
    s += "<text x=\"10\" y=\"60\" font-size=\"11\">no accuracy matrix</text>\n";
    p.height = 80;
    p.width = 300;
    return p;
  }
  for (size_t t = 0; t < n; ++t) {
    const double y = top + cell * static_cast<double>(t);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
                     left - 6, y + cell / 2, label_font, xml_escape("after " + task_label(plot, t)));
    for (size_t j = 0; j <= t; ++j) {
      const double x = left + cell * static_cast<double>(j);
      const double v = j < plot.matrix[t].size() ? plot.matrix[t][j] : std::nan("");
      if (!std::isfinite(v)) {
        s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#cccccc\"/>\n",
                         x, y, cell, cell);
        continue;
      }
      s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\" stroke=\"#ffffff\"/>\n",
                       x, y, cell, cell, heat_color(v));
      const std::string text = cell >= 36 ? fmt::format("{:.1f}", v) : fmt::format("{:.0f}", v);
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{:.1f}\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"{}\">{}</text>\n",
                       x + cell / 2, y + cell / 2, font, v > 55 ? "#ffffff" : "#000000", text);
    }
  }
  for (size_t j = 0; j < n; ++j) {
    const double x = left + cell * (static_cast<double>(j) + 0.5), y = top - 6;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"{}\" transform=\"rotate(-45 {:.1f} {:.1f})\">{}</text>\n",
                     x, y, label_font, x, y, xml_escape(task_label(plot, j)));
  }
  return p;
}

Panel curves_panel(const AccuracyPlot& plot) {
  Panel p;
  size_t tasks = 0;
  double legend_width = 0;
  for (const auto& c : plot.curves) {
    tasks = std::max(tasks, c.values.size());
    legend_width = std::max(legend_width, text_width(c.label, 11));
  }
  const double left = 50, top = 40, plot_w = 360, plot_h = 260;
  const double legend_x = left + plot_w + 20;
  p.width = legend_x + 30 + legend_width + 10;
  p.height = top + plot_h + 50;
  std::string& s = p.body;
  s += "<text x=\"10\" y=\"22\" font-size=\"13\" font-weight=\"bold\">Accuracy after each task (%)</text>\n";
  if (plot.curves.empty() || tasks == 0) {
    s += "<text x=\"10\" y=\"60\" font-size=\"11\">no curves</text>\n";
    p.height = 80;
    p.width = 300;
    return p;
  }
  auto x_of = [&](size_t i) {
    return tasks == 1 ? left + plot_w / 2 : left + plot_w * static_cast<double>(i) / static_cast<double>(tasks - 1);
  };
  auto y_of = [&](double v) { return top + plot_h * (1.0 - std::clamp(v, 0.0, 100.0) / 100.0); };
  // Grid, y ticks every 20 %, axes.
  for (int v = 0; v <= 100; v += 20) {
    const double y = y_of(v);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>\n", left, y,
                     left + plot_w, y);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#000000\"/>\n", left - 5, y,
                     left, y);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\" dominant-baseline=\"middle\">{}</text>\n",
                     left - 8, y, v);
  }
  // Label every task when they fit, else about ten of them.
  const size_t step = std::max<size_t>(1, (tasks + 9) / 10);
  for (size_t i = 0; i < tasks; ++i) {
    if (i % step != 0 && i + 1 != tasks) continue;
    const double x = x_of(i), y = top + plot_h;
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#000000\"/>\n", x, y, x, y + 5);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\n", x, y + 18, i + 1);
  }
  s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#000000\"/>\n", left, top,
                   top + plot_h);
  s += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#000000\"/>\n", left,
                   top + plot_h, left + plot_w);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"middle\">task</text>\n",
                   left + plot_w / 2, top + plot_h + 38);
  s += fmt::format("<text x=\"14\" y=\"{0:.1f}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 14 {0:.1f})\">accuracy (%)</text>\n",
                   top + plot_h / 2);
  // Curves: one polyline per unbroken run of finite values, and a marker on every point.
  for (size_t c = 0; c < plot.curves.size(); ++c) {
    const auto& curve = plot.curves[c];
    const char* color = kPalette[c % std::size(kPalette)];
    s += fmt::format("<g class=\"curve\" stroke=\"{0}\" fill=\"{0}\">\n", color);
    std::string points;
    size_t run = 0;
    auto flush = [&] {
      if (run > 0) s += fmt::format("<polyline fill=\"none\" stroke-width=\"2\" points=\"{}\"/>\n", points);
      points.clear();
      run = 0;
    };
    for (size_t i = 0; i < curve.values.size(); ++i) {
      const double v = curve.values[i];
      if (!std::isfinite(v)) {
        flush();
        continue;
      }
      points += fmt::format("{}{:.1f},{:.1f}", points.empty() ? "" : " ", x_of(i), y_of(v));
      ++run;
    }
    flush();
    for (size_t i = 0; i < curve.values.size(); ++i)
      if (std::isfinite(curve.values[i]))
        s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>\n", x_of(i), y_of(curve.values[i]));
    s += "</g>\n";
    const double ly = top + 10 + 18 * static_cast<double>(c);
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                     legend_x, ly, legend_x + 22, ly, color);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" dominant-baseline=\"middle\">{}</text>\n",
                     legend_x + 28, ly, xml_escape(curve.label));
  }
  return p;
}


}  // namespace
}  // namespace detail

// ==== svg_plot.hpp ===========================================================================

std::string accuracy_svg(const AccuracyPlot& plot) {
  const auto left = detail::heatmap_panel(plot);
  const auto right = detail::curves_panel(plot);
  const double title_height = plot.title.empty() ? 0 : 30;
  const double width = left.width + right.width + 20;
  const double height = title_height + std::max(left.height, right.height);
  std::string s = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} {1:.0f}\" "
      "font-family=\"sans-serif\">\n"
      "<rect x=\"0\" y=\"0\" width=\"{0:.0f}\" height=\"{1:.0f}\" fill=\"#ffffff\"/>\n",
      std::ceil(width), std::ceil(height));
  if (!plot.title.empty())
    s += fmt::format("<title>{0}</title>\n<text x=\"{1:.1f}\" y=\"22\" font-size=\"16\" font-weight=\"bold\" "
                     "text-anchor=\"middle\">{0}</text>\n",
                     detail::xml_escape(plot.title), width / 2);
  s += fmt::format("<g class=\"heatmap\" transform=\"translate(0 {:.1f})\">\n{}</g>\n", title_height, left.body);
  s += fmt::format("<g class=\"curves\" transform=\"translate({:.1f} {:.1f})\">\n{}</g>\n", left.width + 20, title_height,
                   right.body);
  s += "</svg>\n";
  return s;
}

void write_accuracy_svg(const std::string& path, const AccuracyPlot& plot) {
  write_text_file_atomically(path, accuracy_svg(plot));
}

}  // namespace clprompt
