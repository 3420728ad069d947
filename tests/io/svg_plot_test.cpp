#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iterator>

#include "clprompt/io/svg_plot.hpp"
#include "test_util.hpp"

namespace {

// A tiny well-formedness check: tags balance, attribute values are quoted, '&' starts an entity.
// Returns "" when fine, else what is wrong.
std::string xml_problem(const std::string& xml) {
  std::vector<std::string> open;
  for (size_t i = 0; i < xml.size(); ++i) {
    if (xml[i] == '&') {
      const auto semi = xml.find(';', i);
      const auto entity = xml.substr(i, semi == std::string::npos ? 8 : semi - i + 1);
      if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" && entity != "&quot;" && entity != "&apos;")
        return "bad entity " + entity;
      continue;
    }
    if (xml[i] == '>') return "stray '>' in text at " + std::to_string(i);
    if (xml[i] != '<') continue;
    if (xml.compare(i, 2, "<?") == 0) {
      i = xml.find("?>", i) + 1;
      continue;
    }
    size_t end = i + 1;
    bool quoted = false;
    while (end < xml.size() && (quoted || xml[end] != '>')) {
      if (xml[end] == '"') quoted = !quoted;
      if (xml[end] == '<') return "'<' inside a tag at " + std::to_string(end);
      ++end;
    }
    if (end >= xml.size()) return "unterminated tag";
    const std::string tag = xml.substr(i + 1, end - i - 1);
    const std::string name = tag.substr(tag[0] == '/', tag.find_first_of(" />", 1) - (tag[0] == '/'));
    if (tag[0] == '/') {
      if (open.empty() || open.back() != name) return "unbalanced </" + name + ">";
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(name);
    }
    i = end;
  }
  return open.empty() ? "" : "unclosed <" + open.back() + ">";
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

clprompt::AccuracyPlot example() {
  clprompt::AccuracyPlot plot;
  plot.title = "L2P <split> & \"CIFAR\"";
  plot.matrix = {{91.5, 12.7 /* j > t: ignored */}, {84.3, 88.9}, {77.1, std::nan(""), 93.6}};
  plot.curves = {{"average <acc>", {91.5, 86.6, 85.35}}, {"forgetting", {0.0, 7.2, 9.6}}};
  plot.task_labels = {"T1 (0,1)", "T2 (2,3)", "T3 (4,5)"};
  return plot;
}

}  // namespace

TEST_CASE("accuracy SVG is well-formed and escapes labels", "[io][svg]") {
  const auto svg = clprompt::accuracy_svg(example());
  CHECK(xml_problem(svg).empty());
  INFO(xml_problem(svg));
  CHECK(svg.starts_with("<?xml"));
  CHECK_THAT(svg, Catch::Contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  CHECK_THAT(svg, Catch::Contains("L2P &lt;split&gt; &amp; &quot;CIFAR&quot;"));
  CHECK_THAT(svg, Catch::Contains("average &lt;acc&gt;"));
  CHECK_THAT(svg, Catch::Contains("T2 (2,3)"));
  CHECK_FALSE(svg.find("<script") != std::string::npos);
  CHECK_FALSE(svg.find("@font-face") != std::string::npos);
  // The checker itself catches broken markup.
  CHECK_FALSE(xml_problem("<svg><g></svg>").empty());
  CHECK_FALSE(xml_problem("<svg>a & b</svg>").empty());
}

TEST_CASE("accuracy SVG writes each lower-triangle value in its cell", "[io][svg]") {
  const auto svg = clprompt::accuracy_svg(example());
  for (const char* value : {">91.5<", ">84.3<", ">88.9<", ">77.1<", ">93.6<"}) CHECK_THAT(svg, Catch::Contains(value));
  CHECK_THAT(svg, !Catch::Contains("12.7"));  // above the diagonal
  CHECK_THAT(svg, !Catch::Contains(">nan") && !Catch::Contains(">-nan"));  // NaN is an empty cell
}

TEST_CASE("accuracy SVG draws one polyline per curve and gaps at NaN", "[io][svg]") {
  auto plot = example();
  CHECK(count(clprompt::accuracy_svg(plot), "<polyline") == plot.curves.size());
  plot.curves.push_back({"with gap", {50.0, std::nan(""), 70.0, 75.0}});
  const auto svg = clprompt::accuracy_svg(plot);
  CHECK(count(svg, "<polyline") == plot.curves.size() + 1);  // the gap splits the third curve
  CHECK(xml_problem(svg).empty());
}

TEST_CASE("accuracy SVG handles an empty plot and writes files atomically", "[io][svg]") {
  const auto empty = clprompt::accuracy_svg({});
  CHECK(xml_problem(empty).empty());
  clprompt::test::TempDir dir;
  const auto path = dir.file("accuracy.svg");
  clprompt::write_accuracy_svg(path, example());
  std::ifstream in(path, std::ios::binary);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  CHECK(text == clprompt::accuracy_svg(example()));
}
