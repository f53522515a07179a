"""The perf suite's figure parsing and report (its measurements are the benchmark itself)."""

from action_tx.bench import perf

INPUT = "- **123.4 clips/s** (60 batches in 3.10 s after 5 warm-up)\n"
TRUNK = (
    "Reference: float32 matmul 4096x4096 (result reduced in the graph): 300.0 ms, "
    "**441.5 GFLOP/s**.\n\n| pass | time (s) | GFLOP | GFLOP/s | fraction of matmul |\n"
    "|---|---|---|---|---|\n| forward | 0.520 | 219.0 | 421.2 | 0.94 |\n"
    "| forward+backward | 1.800 | 650.0 | 361.1 | 0.79 |\n"
)
EVAL = (
    "Inputs (seed 0, generated in 9.0 s, not timed): 50,000 keyframes, 1 ground-truth rows\n"
    "| evaluate(CSV paths), end to end (read + mAP + all breakdowns) | 7.25 | 6.9 |\n"
)


def test_parse_figures_of_the_sub_reports():
    assert perf.parse_figure(INPUT, r"\*\*([\d.]+) clips/s\*\*") == 123.4
    assert perf.parse_figure(TRUNK, r"\| forward \|[^\n]*\| ([\d.]+) \|\n") == 0.94
    assert perf.parse_figure(TRUNK, r"\| forward\+backward \|[^\n]*\| ([\d.]+) \|\n") == 0.79
    assert perf.parse_figure(TRUNK, r"\*\*([\d.]+) GFLOP/s\*\*") == 441.5
    assert perf.parse_figure(EVAL, r"\| evaluate\(CSV paths\), end to end[^|]*\| ([\d.]+)") == 7.25
    assert perf.parse_figure(EVAL, r"Inputs[^:]*: ([\d,]+) keyframes") == 50000
    assert perf.parse_figure("nothing", r"\*\*([\d.]+) clips/s\*\*") is None


def test_bench_config_is_the_bench_preset():
    config = perf.bench_config()
    assert config.model.trunk == "i3d_tiny" and config.train.batch_size == 4
    assert config.model.anchor_sizes == (16.0, 32.0, 64.0, 96.0)


def test_report_compares_input_with_train_step():
    figures = dict(
        input_clips_per_s=40.0,
        train_step=dict(step_s=0.25, clips_per_s=16.0, batch_size=4, model="m"),
        trunk_forward_fraction=0.9,
        trunk_forward_backward_fraction=0.75,
        eval_end_to_end_s=7.5,
        eval_keyframes=50000.0,
        saved_model=dict(
            clip="uint8 [8, 112, 112, 3]",
            xla_off=dict(seconds=0.1, keyframes_per_s=10.0),
            xla_on=dict(error="no XLA kernel for NMS"),
        ),
    )
    machine = dict(cpu="C", cores=2, load_average=[1.0, 1.0, 1.0], load_average_end=[2.0, 2.0, 2.0])
    md = perf.to_markdown(figures, {"input": "# Input\nbody"}, machine, "demo", True, 12.0)
    lines = md.splitlines()
    assert "| train step, m | 16.0 clips/s (250 ms a step) |" in lines
    assert "| input / train-step consumption | 2.50x (input keeps up) |" in lines
    assert "| evaluator end to end (50000 keyframes) | 7.50 s |" in lines
    assert (
        "| SavedModel serving_default, uint8 [8, 112, 112, 3], XLA off | 10.00 keyframes/s "
        "(100 ms) |"
    ) in lines
    assert "| SavedModel serving_default, XLA on | failed: no XLA kernel for NMS |" in lines
    assert "## Suite `input`" in lines and "## Input" in lines  # sub-report headings demoted
