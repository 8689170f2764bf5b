#pragma once

#include <fuse_lowlevel.h>

namespace diofs {

// The libfuse low-level operation table of diofs (its `userdata` is a diofs::Filesystem).
fuse_lowlevel_ops make_operations();

}  // namespace diofs
