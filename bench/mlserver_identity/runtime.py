"""A tiny MLServer runtime for the benchmark suite: returns every input unchanged as the output of
the same position (OUTPUT__0 for INPUT__0), like beamline's identity_fp32."""
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class IdentityRuntime(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        outputs = [ResponseOutput(name=request_input.name.replace("INPUT", "OUTPUT"),
                                  shape=request_input.shape, datatype=request_input.datatype,
                                  data=request_input.data)
                   for request_input in payload.inputs]
        return InferenceResponse(model_name=self.name, outputs=outputs)
