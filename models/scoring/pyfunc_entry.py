"""The pyfunc bundle's entry point, logged as MLflow "model from code" (no pickled objects).

MLflow executes this file when it loads the bundle; the scorer itself comes from the bundle's
`scorer` artifact in `LeadScoreModel.load_context`.
"""

from mlflow.models import set_model

from models.scoring.bundle import LeadScoreModel

set_model(LeadScoreModel())
