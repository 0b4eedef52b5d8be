"""kdjax.tools.diagnose on real batches: who gets gradient from which term (FitNet: student and regressor, never
the frozen teacher; CE never the regressor), post-ReLU features, and the text report."""

from conftest import load_config, tiny

from kdjax.tools.diagnose import diagnose, format_report


def test_fitnet_gradient_routing_and_features(tmp_path):
    config = tiny(load_config("configs/fitnet.py"), train_limit=256, batch=32, pretrain_epochs=1.0)
    report = diagnose(config, steps=4, workdir=str(tmp_path))
    assert sorted(report["probes"]) == [0, 1, 2, 4]
    fit, ce = "fitnet/Student-Teacher", report["ce_term"]
    assert ce == "gt_ce/Student"
    for probe in report["probes"].values():
        g_fit, g_ce = probe["terms"][fit]["grad_norm"], probe["terms"][ce]["grad_norm"]
        assert g_fit["frozen:Teacher"] == 0.0 and g_ce["frozen:Teacher"] == 0.0
        assert g_fit["Student"] > 0 and g_fit["_losses/fitnet_Student_Teacher"] > 0
        assert g_ce["_losses/fitnet_Student_Teacher"] == 0.0 and g_ce["Student"] > 0
        assert -1.0 <= probe["terms"][fit]["cos_ce"] <= 1.0
    feats = report["probes"][0]["features"]
    # convnet records blocks[i] after BN + ReLU: never negative, many exact zeros
    assert feats["Student/blocks[1]"]["min"] == 0.0 and feats["Teacher/blocks[1]"]["zeros"] > 0.1
    assert report["shapes"]["Student/blocks[1]"] == [32, 7, 7, 16]
    assert report["shapes"]["Teacher/blocks[1]"] == [32, 7, 7, 64]
    text = format_report(report)
    assert "grad/CE" in text and "frozen:Teacher 0" in text
