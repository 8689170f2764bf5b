#pragma once
// Where exceptions stop. Inside diofs everything returns a count or -errno; an exception (a
// bad_alloc, a credentials switch that did not take) is caught at the edge of a unit of work
// (a FUSE request, a writeout, a read-ahead read, an I/O-thread task), logged, and turned into
// the errno of that unit, so that it fails alone: the request is answered, the file is in
// error, the daemon goes on.

#include <string_view>

namespace diofs {

// Called inside a catch block: logs the exception being handled with `what_doing` ("write",
// "inode 8:1/12: writing out 1048576 bytes at 0") and returns the -errno that stands for it:
// -ENOMEM for bad_alloc, the errno of a std::system_error of the generic or system category,
// -EIO for anything else.
int current_exception_errno(std::string_view what_doing) noexcept;

}  // namespace diofs
