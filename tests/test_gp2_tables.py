"""GP2's README table (lightning_modules/gp2/tables.py) from a run's test metrics."""

from __future__ import annotations

from lightning_modules.gp2.module import GP2Module
from lightning_modules.gp2.tables import gp2_readme_table


def test_table_takes_each_column_from_its_dataset_and_alignment():
    test = {
        "test/nyu/delta125_bad": 14.641,
        "test/nyu/lstsq_disparity/delta125_bad": 12.5,
        "test/tum_hdf5/delta125_bad": 15.13,
        "test/tum_hdf5/lstsq_disparity/delta125_bad": 13.0,
        "test/tum/delta125_bad": 99.0,  # the raw TUM reader: the MannequinChallenge set (tum_hdf5) wins
        "test/sintel/absrel": 0.3604,
        "test/sintel/lstsq_disparity/absrel": 0.31,
        "test/diw/whdr": 15.02,
        "test/eth3d_gp2/absrel": 0.1912,
        "test/eth3d_gp2/lstsq_disparity/absrel": "nan",  # metrics.json writes non-finite values as strings
        "test/nyu/absrel": 0.5,  # not a column of the table
    }
    lines = gp2_readme_table(test).splitlines()
    assert lines[0] == (
        "| alignment | NYU δ1.25 bad % | TUM δ1.25 bad % | Sintel AbsRel | DIW WHDR % | ETH3D AbsRel |"
    )
    assert lines[2] == "| UTS (median log-disparity) | 14.64 | 15.13 | 0.360 | 15.02 | 0.191 |"
    assert lines[3] == "| UTSS (lstsq disparity) | 12.50 | 13.00 | 0.310 | 15.02 | nan |"


def test_absent_datasets_print_a_dash_and_no_dataset_no_table():
    table = gp2_readme_table({"test/eth3d/absrel": 0.2})
    assert table.splitlines()[2] == "| UTS (median log-disparity) | - | - | - | - | 0.200 |"
    assert gp2_readme_table({"test/absrel": 0.2, "test/delta125_bad": 40.0}) is None
    assert GP2Module.paper_tables({"test": {"test/absrel": 0.2}}) == []
    assert "0.200" in GP2Module.paper_tables({"test": {"test/eth3d/absrel": 0.2}})[0]
