// The prefetch hints are header-only (include/KilnPrefetch.h); a C target needs one source file.
#include "KilnPrefetch.h"
