"""The lab: what the demo, the backtest, the simulator and the tests use, and ``paytriage
run`` never imports (the simulator, the in-memory PromQL and log engines, rules replay,
scoring, the demo, the backtest)."""
