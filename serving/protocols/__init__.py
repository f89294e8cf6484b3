"""The protocols the server speaks, one router each, around one scoring core.

Each protocol has its parser (a body in, validated rows and what is asked out), its
`APIRouter` and its error formatter: ours (`native`: `/predict` and the operations
endpoints), MLflow's (`mlflow_input`, `mlflow_router`: `/invocations`, `/ping`,
`/version`) and the Open Inference Protocol v2 (`oip_input`, `oip_router`: `/v2`).
`routes` is what their routes share; `rows` what their parsers share. All of them
score through `serving.scoring.score`, by way of the batcher.
"""
