// KernelView: which writers of an inode go through the writeback window. All of an inode's
// writers are in the window or all direct while any is open (the kernel has one page cache per
// inode, which a direct writer would write under and read past).

#include "diofs/kernel_view.hpp"

#include <gtest/gtest.h>

namespace diofs {
namespace {

TEST(KernelView, PlainWritersJoinTheWindowAndSynchronousOnesJoinThem) {
    KernelView view;
    EXPECT_TRUE(view.writer_opened(false));
    EXPECT_TRUE(view.writer_opened(true)) << "a synchronous writer beside a window writer";
    EXPECT_EQ(view.writers(), 2);
    view.writer_closed(true);
    view.writer_closed(true);
    EXPECT_FALSE(view.writing());
}

TEST(KernelView, ASynchronousWriterAloneIsDirectAndKeepsPlainOnesDirect) {
    KernelView view;
    EXPECT_FALSE(view.writer_opened(true));
    EXPECT_FALSE(view.writer_opened(false)) << "a plain writer beside a direct one";
    EXPECT_FALSE(view.writing());
    view.writer_closed(false);
    EXPECT_FALSE(view.writer_opened(false)) << "the synchronous writer is still open";
    view.writer_closed(false);
    view.writer_closed(false);
    EXPECT_TRUE(view.writer_opened(false)) << "no direct writer left";
    view.writer_closed(true);
}

TEST(KernelView, AnOpenWithTruncIsACutToZero) {
    KernelView view;
    struct stat st{};
    st.st_size = 5000;
    view.told(st);
    view.cut();
    EXPECT_EQ(view.size(), 0u);
    EXPECT_TRUE(view.differs(st));
    st.st_size = 0;
    EXPECT_FALSE(view.differs(st));
}

}  // namespace
}  // namespace diofs
