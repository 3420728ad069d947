// Compiled part of include/clprompt/io: file formats.
