#ifndef KILN_CPLATFORM_H
#define KILN_CPLATFORM_H

/// The few operating-system calls Kiln's runtime makes that the Swift C-library overlays do not
/// expose (GNU extensions on Linux), so that the runtime needs no Foundation.

/// The number of processors in this process's affinity mask, or 0 where it cannot be read.
int kiln_affinity_processor_count(void);

/// Names the calling thread (at most 15 bytes are kept on Linux); does nothing where unsupported.
void kiln_name_current_thread(const char *name);

#endif
