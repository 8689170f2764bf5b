#pragma once
// Memory for O_DIRECT: the kernel reads into and writes from it without copying, so its
// address must be a multiple of the file's memory alignment. Move-only; freed with free().

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace diofs {

class AlignedBuffer {
public:
    AlignedBuffer() = default;
    // `alignment` is a power of two; `size` is rounded up to a multiple of it.
    AlignedBuffer(size_t alignment, size_t size) { reset(alignment, size); }

    void reset(size_t alignment, size_t size) {
        size = (size + alignment - 1) & ~(alignment - 1);
        void* p = std::aligned_alloc(alignment, size);
        if (!p)
            throw std::bad_alloc();
        data_.reset(static_cast<char*>(p));
        size_ = size;
        alignment_ = alignment;
    }
    // Makes room for `size` bytes at `alignment`, keeping the memory when it already fits.
    void reserve(size_t alignment, size_t size) {
        if (size > size_ || alignment > alignment_ || !data_)
            reset(alignment, size);
    }

    char* data() const { return data_.get(); }
    size_t size() const { return size_; }

private:
    struct Free {
        void operator()(char* p) const noexcept { std::free(p); }
    };
    std::unique_ptr<char, Free> data_;
    size_t size_ = 0;
    size_t alignment_ = 0;
};

}  // namespace diofs
