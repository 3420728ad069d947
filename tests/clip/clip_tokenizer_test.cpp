// CLIP tokenizer on a small hand-made vocabulary, written by the tests in both file formats.
// Expected values were derived by hand from CLIP's algorithm (and cross-checked against a
// Python re-implementation of simple_tokenizer.py using the `regex` module).
#include "clprompt/clip/clip_tokenizer.hpp"
#include "test_util.hpp"
#include "clip/tiny_vocab.hpp"

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

namespace {

using clprompt::ClipTokenizer;
using clprompt::TokenizerError;
using Strings = std::vector<std::string>;
using Ids = std::vector<int64_t>;

using clprompt::test::TempDir;

using clprompt::test::clip_vocab;
using clprompt::test::merges_text;
using clprompt::test::write_gzip;
using clprompt::test::write_text;
using clprompt::test::write_vocab_json;

// The shared tiny vocabulary (tiny_vocab.hpp): ids 512 + merge rank, then sot 529, eot 530.
const Strings& kMerges = clprompt::test::kTinyMerges;
constexpr int64_t kHello = 515;
using clprompt::test::kTinyEot;
using clprompt::test::kTinySot;

ClipTokenizer openai_tokenizer(const TempDir& dir, clprompt::ClipTokenizerOptions options = {}) {
  write_gzip(dir / "bpe.txt.gz", merges_text(kMerges));
  return ClipTokenizer::from_openai_bpe(dir / "bpe.txt.gz", options);
}

template <class F>
std::string error_of(F&& f) {
  return clprompt::test::error_message<TokenizerError>(std::forward<F>(f));
}

}  // namespace

TEST_CASE("bytes_to_unicode is GPT-2's table", "[text][tokenizer]") {
  const auto& table = clprompt::detail::bytes_to_unicode();
  REQUIRE(table.size() == 256);
  CHECK(table['a'] == U'a');
  CHECK(table[0xE9] == U'é');    // printable Latin-1 maps to itself
  CHECK(table[0] == 0x100);      // the first unprintable byte
  CHECK(table[' '] == 0x120);    // the famous 'Ġ'
  CHECK(table[0x7F] == 0x121);
  CHECK(table[0xAD] == 0x143);   // soft hyphen, the last of the 68 remapped bytes
  CHECK(std::set<char32_t>(table.begin(), table.end()).size() == 256);
}

TEST_CASE("UTF-8 decoding replaces invalid sequences as Python does", "[text][tokenizer]") {
  using clprompt::detail::utf8_decode;
  CHECK(utf8_decode("a\xC3\xA9\xE7\x8C\xAB\xF0\x9F\x99\x82") == U"aé猫🙂");
  CHECK(utf8_decode("\xE7\x8C!") == U"\uFFFD!");          // truncated sequence: one U+FFFD
  CHECK(utf8_decode("\xED\xA0\x80") == U"\uFFFD\uFFFD\uFFFD");  // surrogate: byte by byte
  CHECK(utf8_decode("\xF0\x9F\x99") == U"\uFFFD");
  CHECK(utf8_decode("\xC0\xAF") == U"\uFFFD\uFFFD");       // overlong
  CHECK(utf8_decode("a\xFF" "b") == U"a\uFFFDb");
  CHECK(clprompt::detail::utf8_encode(U"aé猫🙂") == "a\xC3\xA9\xE7\x8C\xAB\xF0\x9F\x99\x82");
}

TEST_CASE("text cleaning: HTML, ftfy's character fixes, whitespace, lower-casing", "[text][tokenizer]") {
  using namespace clprompt::detail;
  CHECK(html_unescape(U"&#x41;&#66;&#0;&#128;&#1;&ampx &lt3 &apos &apos; &#xD800; &quot &#x; &#65534; &#9999999999; &GT;") ==
        U"AB\uFFFD€&x <3 &apos ' \uFFFD \" &#x;  \uFFFD >");
  // ftfy unescapes until stable when the text has no '<'; CLIP then unescapes twice more.
  CHECK(basic_clean(U"&amp;amp;amp;") == U"&");
  CHECK(basic_clean(U"<b>&amp;amp;amp;</b>") == U"<b>&amp;</b>");
  CHECK(basic_clean(U"&amp;amp;amp;\n<b>&amp;amp;amp;</b>\n&amp;amp;amp;") == U"&\n<b>&amp;</b>\n&amp;");
  CHECK(basic_clean(U" it\u2019s \uFB01ne \uFF21\uFF22\uFF23\u0085x a\u000Bb ") == U"it's fine ABC\u2026x ab");
  CHECK(whitespace_clean(U"  tabs\tand\nnewlines \u3000 ") == U"tabs and newlines");
  CHECK(to_lower(U"Hello ÀÉÎÕÜ ΟΔΟΣ ΣΑΣ ПРИВЕТ İ Σ") == U"hello àéîõü οδος σας привет i\u0307 σ");
  // Final sigma looks past apostrophes; 猫 is a letter but uncased, so the Σ before it is final.
  CHECK(to_lower(U"ΟΔΟΣ'Α ΣΑΣ猫 ΣΑΣ-") == U"οδοσ'α σας猫 σας-");
}

TEST_CASE("pre-tokenisation follows CLIP's regex", "[text][tokenizer]") {
  const Strings expected = {"don", "'t", "stop", "!!!", "2", "0", "2", "4", "a", ",", "b", "'s", "a", "''", "s",
                            "x", "'s", "we", "'re", "i", "'m", "they", "'ve", "he", "'d", "y", "'", "all", "½",
                            "café", "猫猫", "🙂🙂", "<|startoftext|>", "hi", "<|endoftext|>"};
  CHECK(clprompt::detail::pre_tokenize(U"don't stop!!! 2024 a,b 'sa ''s x's we're i'm they've he'd y'all ½ café "
                                       U"猫猫 🙂🙂 <|startoftext|>hi<|endoftext|>") == expected);
  // A punctuation run is greedy: it swallows the start of a special token.
  CHECK(clprompt::detail::pre_tokenize(U"!<|endoftext|>") == Strings{"!<|", "endoftext", "|>"});
}

TEST_CASE("BPE tokens of tricky strings", "[text][tokenizer]") {
  TempDir dir;
  const auto tok = openai_tokenizer(dir);
  CHECK(tok.bpe_tokens("Hello HELLO") == Strings{"hello</w>", "hello</w>"});
  CHECK(tok.bpe_tokens("don't it's we'll") ==
        Strings{"don</w>", "'t</w>", "it</w>", "'", "s</w>", "we</w>", "'", "l", "l</w>"});
  CHECK(tok.bpe_tokens("!!!") == Strings{"!!", "!</w>"});
  CHECK(tok.bpe_tokens("!!!!") == Strings{"!!", "!", "!</w>"});  // "! !</w>" is not a merge
  CHECK(tok.bpe_tokens("!!!!!") == Strings{"!!!!", "!</w>"});    // every "! !" merges, then "!! !!"
  CHECK(tok.bpe_tokens("a,b") == Strings{"a</w>", ",</w>", "b</w>"});
  CHECK(tok.bpe_tokens("2024") == Strings{"2</w>", "0</w>", "2</w>", "4</w>"});
  CHECK(tok.bpe_tokens("a&amp;b") == Strings{"a</w>", "&</w>", "b</w>"});
  CHECK(tok.bpe_tokens("it&#39;s") == Strings{"it</w>", "'", "s</w>"});
  CHECK(tok.bpe_tokens("  tabs\tand\nnewlines  ") ==
        Strings{"t", "ab", "s</w>", "a", "n", "d</w>", "n", "e", "w", "l", "i", "n", "e", "s</w>"});
  // Non-ASCII goes through its UTF-8 bytes: é = C3 A9 -> "Ã" "©" (merged), ü = C3 BC,
  // 猫 = E7 8C AB (8C is unprintable -> U+012E "Į"), 🙂 = F0 9F 99 82.
  CHECK(tok.bpe_tokens("é ü 猫 🙂") == Strings{"Ã©</w>", "Ã", "¼</w>", "ç", "Į", "«</w>", "ð", "Ł", "Ļ", "Ĥ</w>"});
  CHECK(tok.bpe_tokens("Café CAFÉ") == Strings{"cafÃ©</w>", "cafÃ©</w>"});
  CHECK(tok.bpe_tokens("a<|endoftext|>b") == Strings{"a</w>", "<|endoftext|>", "b</w>"});
  CHECK(tok.bpe_tokens("x<|ENDOFTEXT|>") == Strings{"x</w>", "<|endoftext|>"});
  CHECK(tok.bpe_tokens("!<|endoftext|>") ==
        Strings{"!", "<", "|</w>", "e", "n", "do", "f", "t", "e", "x", "t</w>", "|", "></w>"});
  CHECK(tok.bpe_tokens("   ").empty());
}

TEST_CASE("merges apply by rank, not by position or file order of use", "[text][tokenizer]") {
  TempDir dir;
  // "b c</w>" outranks "a b": a bc</w>. With the order swapped the same word gives ab c</w>.
  CHECK(openai_tokenizer(dir).bpe_tokens("abc") == Strings{"a", "bc</w>"});
  write_text(dir / "swapped.txt", merges_text({"a b", "b c</w>"}));
  CHECK(ClipTokenizer::from_openai_bpe(dir / "swapped.txt").bpe_tokens("abc") == Strings{"ab", "c</w>"});
  // max_merges keeps the first merges only: "hello" stops at he ll o</w>.
  const auto two = ClipTokenizer::from_openai_bpe(dir / "bpe.txt.gz", {}, 2);
  CHECK(two.bpe_tokens("hello") == Strings{"he", "ll", "o</w>"});
  CHECK(two.vocab_size() == 516);
}

TEST_CASE("ids follow CLIP's vocabulary layout", "[text][tokenizer]") {
  TempDir dir;
  const auto tok = openai_tokenizer(dir);
  CHECK(tok.vocab_size() == 531);
  CHECK(tok.start_token() == kTinySot);
  CHECK(tok.end_token() == kTinyEot);
  // "!" is id 0, "'" 6, "a" 64, "a</w>" 320, "l" 75, "l</w>" 331, "s</w>" 338; "a b</w>" is no merge.
  CHECK(tok.encode("Hello, we'll ab's") == Ids{kHello, 267, 522, 6, 75, 331, 64, 321, 6, 338});
  CHECK(tok.encode("a<|endoftext|>") == Ids{320, kTinyEot});
  CHECK(tok.encode("").empty());
}

TEST_CASE("tokenize pads to the context length and truncates keeping <|endoftext|>", "[text][tokenizer]") {
  TempDir dir;
  const auto tok = openai_tokenizer(dir, {.context_length = 8});
  CHECK(tok.tokenize("hello") == Ids{kTinySot, kHello, kTinyEot, 0, 0, 0, 0, 0});
  CHECK(tok.tokenize("") == Ids{kTinySot, kTinyEot, 0, 0, 0, 0, 0, 0});
  const std::string six = "hello hello hello hello hello hello";
  CHECK(tok.tokenize(six) == Ids{kTinySot, kHello, kHello, kHello, kHello, kHello, kHello, kTinyEot});
  CHECK(tok.tokenize(six + " hello hello") == Ids{kTinySot, kHello, kHello, kHello, kHello, kHello, kHello, kTinyEot});
  CHECK(openai_tokenizer(dir).tokenize("hello").size() == 77);

  const auto strict = openai_tokenizer(dir, {.context_length = 8, .truncate = false});
  CHECK(strict.tokenize(six).back() == kTinyEot);
  CHECK(error_of([&] { (void)strict.tokenize(six + " hello"); }) ==
        "ClipTokenizer: text of 9 tokens is too long for context length 8: '" + six + " hello'");
  CHECK(error_of([&] { (void)openai_tokenizer(dir, {.context_length = 1}); }) ==
        "ClipTokenizer: context_length must be at least 2 (start and end tokens), got 1");
}

TEST_CASE("decode inverts encode up to cleaning, with spaces at word ends", "[text][tokenizer]") {
  TempDir dir;
  const auto tok = openai_tokenizer(dir);
  CHECK(tok.decode(tok.encode("Hello, wörld! 猫 🙂")) == "hello , wörld ! 猫 🙂 ");
  CHECK(tok.decode(tok.encode("Café &amp; don't")) == "café & don 't ");
  CHECK(tok.decode({kTinySot, kHello, kTinyEot}) == "<|startoftext|>hello <|endoftext|>");
  CHECK(tok.decode({163}) == "\xEF\xBF\xBD");  // byte E7 alone is invalid UTF-8 -> U+FFFD
  CHECK(error_of([&] { (void)tok.decode({531}); }) == "ClipTokenizer::decode: id 531 is not in the vocabulary");
  CHECK(error_of([&] { (void)tok.decode({-1}); }) == "ClipTokenizer::decode: id -1 is not in the vocabulary");
}

TEST_CASE("Hugging Face and OpenAI files give the same tokenizer", "[text][tokenizer]") {
  TempDir dir;
  const auto openai = openai_tokenizer(dir);
  write_vocab_json(dir / "vocab.json", clip_vocab(kMerges));
  write_text(dir / "merges.txt", merges_text(kMerges));
  const auto hf = ClipTokenizer::from_hf_files(dir / "vocab.json", dir / "merges.txt");
  CHECK(hf.vocab_size() == openai.vocab_size());
  CHECK(hf.start_token() == kTinySot);
  CHECK(hf.end_token() == kTinyEot);
  for (const char* text : {"Hello HELLO", "don't it's we'll", "!!!!! a,b 2024", "é ü 猫 🙂 Café", "abc<|endoftext|>"}) {
    INFO(text);
    CHECK(hf.encode(text) == openai.encode(text));
    CHECK(hf.tokenize(text) == openai.tokenize(text));
  }
  // vocab.json's ids are used as they are: here reversed.
  auto vocab = clip_vocab(kMerges);
  std::reverse(vocab.begin(), vocab.end());
  write_vocab_json(dir / "reversed.json", vocab);
  const auto reversed = ClipTokenizer::from_hf_files(dir / "reversed.json", dir / "merges.txt");
  CHECK(reversed.encode("hello a") == Ids{530 - kHello, 530 - 320});
  CHECK(reversed.start_token() == 1);
  CHECK(reversed.decode(reversed.encode("hello a")) == "hello a ");
}

TEST_CASE("malformed files give errors naming the file and line", "[text][tokenizer]") {
  TempDir dir;
  const std::string missing = dir / "missing.txt.gz";
  CHECK(error_of([&] { (void)ClipTokenizer::from_openai_bpe(missing); }) == missing + ": cannot open");

  const std::string bad = dir / "bad.txt";
  write_text(bad, "#version: 0.2\nh e\nhe\n");
  CHECK(error_of([&] { (void)ClipTokenizer::from_openai_bpe(bad); }) ==
        bad + ": line 3: expected two space-separated symbols, got 'he'");
  write_gzip(dir / "bad.gz", "#version: 0.2\nh e\r\n\nl l\n");
  CHECK(error_of([&] { (void)ClipTokenizer::from_openai_bpe(dir / "bad.gz"); }) ==
        dir / "bad.gz" + ": line 3: expected two space-separated symbols, got ''");
  write_text(bad, "#version: 0.2\nh e l\n");
  CHECK(error_of([&] { (void)ClipTokenizer::from_openai_bpe(bad); }) ==
        bad + ": line 2: expected two space-separated symbols, got 'h e l'");
  // Lines past max_merges are not read, as in CLIP.
  CHECK(ClipTokenizer::from_openai_bpe(bad, {}, 0).vocab_size() == 514);
  write_text(bad, "");
  CHECK(error_of([&] { (void)ClipTokenizer::from_openai_bpe(bad); }) ==
        bad + ": is empty; expected a header line, then one merge per line");

  // A gzip file cut short.
  write_gzip(dir / "full.gz", merges_text(kMerges) + std::string(4000, '#'));
  std::string bytes;
  {
    std::ifstream in(dir / "full.gz", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  write_text(dir / "cut.gz", bytes.substr(0, bytes.size() / 2));
  CHECK_THAT(error_of([&] { (void)ClipTokenizer::from_openai_bpe(dir / "cut.gz"); }),
             Catch::Matchers::StartsWith(dir / "cut.gz" + ": cannot read: "));

  const std::string vocab = dir / "vocab.json", merges = dir / "merges.txt";
  write_text(merges, merges_text(kMerges));
  write_text(vocab, "{\"a\": 0,");
  CHECK_THAT(error_of([&] { (void)ClipTokenizer::from_hf_files(vocab, merges); }),
             Catch::StartsWith(vocab + ": not valid JSON: ") && Catch::Contains("line 1, column 9"));
  write_text(vocab, "[1, 2]");
  CHECK(error_of([&] { (void)ClipTokenizer::from_hf_files(vocab, merges); }) ==
        vocab + ": expected a JSON object mapping tokens to ids");
  write_text(vocab, R"({"a": 1.5})");
  CHECK(error_of([&] { (void)ClipTokenizer::from_hf_files(vocab, merges); }) ==
        vocab + ": the id of 'a' must be an integer in [0, 1), got 1.5");
  write_text(vocab, R"({"a": 0})");
  CHECK(error_of([&] { (void)ClipTokenizer::from_hf_files(vocab, merges); }) ==
        vocab + ": no entry for '<|startoftext|>'");
  auto without_caf = clip_vocab(kMerges);
  without_caf.erase(without_caf.begin() + 527);  // "caf", merged on merges.txt line 17
  write_vocab_json(vocab, without_caf);
  CHECK(error_of([&] { (void)ClipTokenizer::from_hf_files(vocab, merges); }) ==
        vocab + ": no entry for merged token 'caf' (" + merges + " line 17)");
  write_vocab_json(vocab, clip_vocab(kMerges));
  CHECK(error_of([&] { (void)ClipTokenizer::from_hf_files(vocab, dir / "none.txt"); }) ==
        dir / "none.txt" + ": cannot open");
}

TEST_CASE("the tokenizer can be shared between threads", "[text][tokenizer]") {
  TempDir dir;
  const auto tok = openai_tokenizer(dir);
  const Strings texts = {"Hello HELLO", "don't it's we'll", "!!!!! a,b 2024", "é ü 猫 🙂 Café"};
  std::vector<Ids> expected;
  for (const auto& t : texts) expected.push_back(tok.encode(t));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::size_t k = static_cast<std::size_t>(t + i) % texts.size();
        if (tok.encode(texts[k]) != expected[k]) ++failures;
      }
    });
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
}
