"""Pictures and tables for people: what the dashboard pages and the benchmarks show.

Nothing here imports Streamlit or Keras, reads a run folder or trains
anything: each function turns arrays, records or plain dicts into an image, a
figure, a ``pandas.DataFrame`` or a sentence. One module per kind of output:

- ``images``: masks in class colours, overlays, probability heatmaps, colour bars, tiles (numpy, OpenCV);
- ``files``: uploaded image bytes decoded, predicted masks encoded for download;
- ``figures``: interactive Plotly charts (probability heatmap, class frequencies, training curves);
- ``tables``: class frequencies and areas, evaluation tables, best values marked, the study table;
- ``notes``: sentences about a dataset (sizes, class imbalance, what its own split leaves out);
- ``problems``: the problems an import found, as a table;
- ``runtable``: run labels, the runs table (with each run's main settings) and its filters, durations;
- ``settings``: two runs' settings side by side, settings against a score as parallel coordinates;
- ``comparison``: which runs can be compared, and which images to show side by side;
- ``review``: the confusion matrix, precision-recall and threshold curves, the map of where runs disagree.

This module is the public surface: pages use ``from segcore import visualize as
viz`` and ``viz.<name>``; the names below are the whole of it.
"""

from __future__ import annotations

from segcore.visualize.comparison import (
    comparable_runs,
    image_choices,
    rank_runs,
    shared_images,
    trained_on_older_data,
    worst_images_per_run,
)
from segcore.visualize.figures import (
    class_frequency_figure,
    curve_metrics,
    curves_figure,
    epoch_time_figure,
    heatmap_figure,
    history_frame,
    reliability_figure,
)
from segcore.visualize.files import decode_image, encode_mask
from segcore.visualize.images import (
    HEATMAP_COLORMAP,
    IGNORE_COLOR,
    class_colors,
    class_probability,
    colorbar,
    colorbar_horizontal,
    colorize_mask,
    foreground,
    heatmap,
    heatmap_with_colorbar,
    overlay,
    resize_for_display,
    resize_to,
    stack_tiles,
    to_rgb,
)
from segcore.visualize.review import (
    AGREE_WRONG_COLOR,
    DISAGREE_COLOR,
    confusion_figure,
    disagreement_overlay,
    pr_figure,
    threshold_figure,
)
from segcore.visualize.notes import imbalance_warning, size_summary, subset_split_note
from segcore.visualize.problems import PROBLEM_COLUMNS, problems_frame
from segcore.visualize.runtable import (
    audit_rows,
    filter_runs,
    format_duration,
    imported_by_text,
    quick_start_duration_note,
    run_device,
    run_label,
    run_labels,
    runs_frame,
    short_run_id,
)
from segcore.visualize.settings import highlight_differences, settings_diff_frame, settings_parallel_figure
from segcore.visualize.tables import (
    STUDY_COLUMNS,
    STUDY_HIGHER_IS_BETTER,
    best_mask,
    class_frequency_frame,
    compare_table,
    highlight_best,
    mask_areas,
    per_class_table,
    per_image_differences,
    per_image_frame,
    ranked_rows,
    study_table,
    table_markdown,
    worst_images,
)
