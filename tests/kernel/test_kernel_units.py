"""Units and x86_64 constants (kernel-facts.md section 1)."""

import pytest

from balloonsim.units import (
    MAX_ORDER_PAGES,
    PAGE_SIZE,
    PAGEBLOCK_PAGES,
    PAGES_PER_SECTION,
    PMD_PAGES,
    SECTION_SIZE,
    STRUCT_PAGE_SIZE,
    VMEMMAP_START,
    GiB,
    MiB,
    TiB,
    format_size,
    kb,
    pages,
    parse_size,
    pfn_to_page_addr,
)


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("128M", 128 * MiB),
        ("10G", 10 * GiB),
        ("0x100000000", 4 * GiB),
        ("0X280000000", 10 * GiB),
        ("2GiB", 2 * GiB),
        ("2gib", 2 * GiB),
        ("512MB", 512 * MiB),
        ("16T", 16 * TiB),
        ("4096", 4096),
        (" 1G ", GiB),
        ("1.5G", 3 * GiB // 2),
        ("4K", 4096),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("bad", ["", "12Q", "G", "-1G", "1.5", "0.3K", "0xZZ", "10 G B", "ten", -5, True, 1.5])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_parse_size_error_names_the_text():
    with pytest.raises(ValueError, match="12Q"):
        parse_size("12Q")


@pytest.mark.parametrize("nbytes", [128 * MiB, 10 * GiB, 1536 * 1024, 16 * TiB, 4097])
def test_format_size_round_trips(nbytes):
    assert parse_size(format_size(nbytes)) == nbytes


def test_constants_match_kernel_facts():
    assert PAGE_SIZE == 4096
    assert STRUCT_PAGE_SIZE == 64
    assert SECTION_SIZE == 128 * MiB and PAGES_PER_SECTION == 32768
    # memmap per section: 32768 * 64 B = 2 MiB = 512 pages = one PMD
    assert PAGES_PER_SECTION * STRUCT_PAGE_SIZE == 2 * MiB == PMD_PAGES * PAGE_SIZE
    assert PAGEBLOCK_PAGES == 512 and MAX_ORDER_PAGES == 1024
    assert VMEMMAP_START == 0xFFFFEA0000000000


def test_pfn_to_page_addr_dimm_range():
    # kernel-facts 9: the 10 GiB DIMM at 4 GiB is pfn 0x100000-0x37ffff, vmemmap ffffea0004000000-ffffea000e000000
    assert pfn_to_page_addr(0) == VMEMMAP_START
    assert pfn_to_page_addr(0x100000) == 0xFFFFEA0004000000
    assert pfn_to_page_addr(0x380000) == 0xFFFFEA000E000000
    # RFC18: the struct pages of the 40960 memmap pages at 0x100000-0x109fff
    assert pfn_to_page_addr(0x109FFF) == 0xFFFFEA000427FFC0
    assert pfn_to_page_addr(1, struct_page_size=80) == VMEMMAP_START + 80


def test_pages_and_kb():
    assert pages(10 * GiB) == 2_621_440
    assert kb(2_621_440) == 10_485_760
    with pytest.raises(ValueError):
        pages(4095)
