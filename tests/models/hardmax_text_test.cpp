// E-mails as sets of hashed word points (models/hardmax/text.h), the input of the spam experiment.
#include <gtest/gtest.h>

#include "models/hardmax/text.h"

namespace gradus::hardmax {
namespace {

TEST(HardmaxText, EmailWordsTakeTheSubjectAndTheBodyOnce) {
  const std::string mail =
      "From: someone@example.com\r\nSubject: Cheap PILLS, cheap!\r\nX-Spam: yes\r\n\r\n"
      "Buy cheap pills now; buy NOW. a x1\r\n";
  EXPECT_EQ(email_words(mail, 100),
            (std::vector<std::string>{"cheap", "pills", "buy", "now", "x1"}));
  EXPECT_EQ(email_words(mail, 2), (std::vector<std::string>{"cheap", "pills"}));
  // LF line ends and no body.
  EXPECT_EQ(email_words("Subject: hello world\n", 10),
            (std::vector<std::string>{"hello", "world"}));
}

TEST(HardmaxText, EmbeddingIsAFixedFunctionOfTheWord) {
  const auto a = embed_word("spam", 16), b = embed_word("spam", 16), c = embed_word("ham", 16);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(embed_word("spam", 16, 1), a);  // another seed, another table
}

}  // namespace
}  // namespace gradus::hardmax
