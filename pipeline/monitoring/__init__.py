"""Monitoring after the merge: what was served, against what the model was validated on.

`window` reads a time window of the prediction log (`serving.prediction_log`, written by
the server and batch scoring); `drift` tests each input feature and the prediction
against the run's training reference (`pipeline.stages.reference`) and corrects the
p-values together; `labels` joins late labels and measures the gate's metric live;
`monitor` wires them for `mlops monitor` and the monitoring DAG; `outputs` writes the
JSON summary, the HTML report and the Prometheus gauges.
"""
