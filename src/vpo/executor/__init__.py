"""Running the real tools on a file: mkvpropedit in place, mkvmerge and ffmpeg into a
temporary file that replaces the original only once verified."""
