#pragma once
// Self-contained SVG figures of continual-learning results (no scripts, no external fonts), so
// a run directory can be inspected in any browser without Python.
#include <string>
#include <vector>

namespace clprompt {

/// Accuracy (%) after each task, e.g. the average accuracy over the tasks seen so far.
struct AccuracyCurve {
  std::string label;
  std::vector<double> values;
};

struct AccuracyPlot {
  std::string title;
  /// a[t][j] in %: accuracy on task j after training task t; only j <= t is drawn.
  std::vector<std::vector<double>> matrix;
  std::vector<AccuracyCurve> curves;
  /// Optional names of the tasks, e.g. "T1 (0,1)"; default "T1", "T2", ...
  std::vector<std::string> task_labels;
};

/// Two panels: a heatmap of the lower triangle of the accuracy matrix with each value written
/// in its cell, and a line chart of the curves (x = task, y = 0..100 %, axes, ticks, legend).
/// NaN values are drawn as empty cells and as gaps in the lines (a curve with gaps is drawn as
/// one polyline per unbroken run); labels are XML-escaped.
std::string accuracy_svg(const AccuracyPlot& plot);

/// accuracy_svg written atomically to `path`.
void write_accuracy_svg(const std::string& path, const AccuracyPlot& plot);

}  // namespace clprompt
