#pragma once
// A private temporary directory for a unit test, removed with everything in it when the test's
// fixture goes.

#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>

namespace diofs {

class TempDir {
public:
    // /tmp/diofs-KIND-XXXXXX; throws when it cannot be made (the test then fails).
    explicit TempDir(const std::string& kind) {
        std::string pattern = "/tmp/diofs-" + kind + "-XXXXXX";
        if (!::mkdtemp(pattern.data()))
            throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }

private:
    std::string path_;
};

}  // namespace diofs
