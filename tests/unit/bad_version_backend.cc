// A backend plug-in built for a future ABI major version; the server must refuse to load it.
#include "beamline/backend/backend_api.h"

extern "C" BL_BACKEND_EXPORT uint32_t beamline_backend_api_version(void) {
  return ((BL_BACKEND_API_VERSION_MAJOR + 1) << 16) | 0u;
}

extern "C" BL_BACKEND_EXPORT BlError* beamline_backend_init(const BlHostApi* host,
                                                            BlBackendApi* /*backend*/) {
  return host->errorNew(BL_STATUS_INTERNAL, "init must not be called after a version mismatch");
}
