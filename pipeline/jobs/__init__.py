"""Jobs: the composed runs a person, a schedule or a cluster starts.

Training a model and registering it (`training`), scoring a batch on an engine
(`scoring`), and the command lines of the same jobs run on EMR Serverless (`emr`).
The CLI and the DAGs call these; they compose the stages and the GitOps conventions
and decide nothing the library below them does not.
"""
