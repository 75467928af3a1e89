"""MLflow models-from-code entry: this file is stored with each logged model and executed
at load time, so the model is rebuilt from its bundle and nothing is unpickled."""

from mlflow.models import set_model

from forecaster.pyfunc_model import ForecasterPyfunc

set_model(ForecasterPyfunc())
