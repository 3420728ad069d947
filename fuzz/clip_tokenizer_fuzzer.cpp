// libFuzzer target: the CLIP tokenizer's files (clip/clip_tokenizer.hpp) and the text it encodes.
// An input with kFileSeparator is Hugging Face's vocab.json, merges.txt and, optionally, a text;
// without, OpenAI's bpe_simple_vocab file (gzipped or plain). A tokenizer that loads encodes the
// text (or a fixed one) and decodes the ids again.
#include <cstddef>
#include <cstdint>
#include <string>

#include "clprompt/clip/clip_tokenizer.hpp"
#include "clprompt/core/error.hpp"
#include "fuzz_input.hpp"

namespace {

void use(const clprompt::ClipTokenizer& tokenizer, const std::string& text) {
  const auto ids = tokenizer.tokenize(text);
  if (ids.size() != static_cast<std::size_t>(tokenizer.options().context_length))
    clprompt::fuzz::finding("tokenize returned a sequence that is not context_length long");
  for (const int64_t id : ids)
    if (id < 0 || static_cast<std::size_t>(id) >= tokenizer.vocab_size())
      clprompt::fuzz::finding("tokenize returned an id outside the vocabulary");
  (void)tokenizer.decode(tokenizer.encode(text));
  (void)tokenizer.bpe_tokens(text);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) { return clprompt::fuzz::single_threaded(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const auto files = clprompt::fuzz::split_files(data, size);
  const auto& scratch = clprompt::fuzz::scratch();
  try {
    if (files.size() >= 2) {
      const auto tokenizer = clprompt::ClipTokenizer::from_hf_files(scratch.write("vocab.json", files[0]),
                                                                    scratch.write("merges.txt", files[1]));
      use(tokenizer, files.size() >= 3 ? files[2] : "a photo of a café, don't!!");
    } else {
      const auto tokenizer = clprompt::ClipTokenizer::from_openai_bpe(scratch.write("bpe_simple_vocab.txt.gz", files[0]));
      use(tokenizer, "a photo of a café, don't!!");
    }
  } catch (const clprompt::Error&) {
    // Bad input ends in a documented error: the expected outcome.
  }
  return 0;
}
