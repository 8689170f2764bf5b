#include "diofs/error_boundary.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <exception>
#include <new>
#include <system_error>

namespace diofs {

int current_exception_errno(std::string_view what_doing) noexcept {
    try {
        throw;
    } catch (const std::bad_alloc&) {
        spdlog::error("{}: out of memory", what_doing);
        return -ENOMEM;
    } catch (const std::system_error& e) {
        spdlog::error("{}: {}", what_doing, e.what());
        const auto& category = e.code().category();
        if ((category == std::generic_category() || category == std::system_category()) &&
            e.code().value() > 0)
            return -e.code().value();
        return -EIO;
    } catch (const std::exception& e) {
        spdlog::error("{}: {}", what_doing, e.what());
        return -EIO;
    } catch (...) {
        spdlog::error("{}: unknown exception", what_doing);
        return -EIO;
    }
}

}  // namespace diofs
