#include "diofs/range_lock.hpp"

#include <algorithm>

namespace diofs {

RangeLock::Guard RangeLock::lock(uint64_t begin, uint64_t end) {
    std::unique_lock lock(mutex_);
    released_.wait(lock, [&] {
        return std::none_of(held_.begin(), held_.end(),
                            [&](const auto& r) { return r.first < end && begin < r.second; });
    });
    held_.emplace_back(begin, end);
    return Guard(*this, begin, end);
}

void RangeLock::unlock(uint64_t begin, uint64_t end) {
    {
        std::lock_guard lock(mutex_);
        auto it = std::find(held_.begin(), held_.end(), std::make_pair(begin, end));
        held_.erase(it);
    }
    released_.notify_all();
}

size_t RangeLock::held() const {
    std::lock_guard lock(mutex_);
    return held_.size();
}

}  // namespace diofs
