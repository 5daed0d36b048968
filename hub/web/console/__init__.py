"""Static files of the live console (zh-CN first, English available)."""
