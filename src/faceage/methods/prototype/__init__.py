"""Method ``prototype`` (the default): move a face along the difference between two age prototypes.

The classical route to believable aging without a GAN (Burt & Perrett 1995; Rowland & Perrett
1995; Tiddeman, Burt & Perrett 2001; Kemelmacher-Shlizerman, Suwajanakorn & Seitz, CVPR 2014),
on a 256 px aligned face with its 478 landmarks, in the order the code runs them
(``method.PrototypeMethod.plan`` then ``render``):

0. **cells** - a small gender/ethnicity classifier stored with the prototypes picks which averaged
   faces (age bin x gender x ethnicity) describe the person (``method.PrototypeMethod.mix``);
   the non-age regions (hair, background), the face region and the lower face are found
   (``regions.py``).
1. **shape** (``shape.py``) - the prototype landmarks' change from the source age to the target
   age, with the cranium scaled by growth norms, as a smooth velocity field whose exponential is a
   warp that cannot fold: the whole change is applied. When rejuvenating, only a quarter of the
   cranium growth, and the shape stops growing with the strength at a displacement cap (more made
   adults strangers, not children). The engine applies the same warp to the photo at its own
   resolution (``Edit.flow``); a poor landmark fit skips it with a warning.
2. **colour** (``colour.py``) - the target prototype minus the source prototype, each relit like
   this face, bin by bin; its luminance only as smooth shading, faded towards the hairline.
3. **detail** (``detail.py``) - the sharp signed detail of the two ages (averages aligned by
   collection flow) relit like the face, and the band-energy ratios on the face's own texture.
   When rejuvenating, the detail only flattens the face's own lines (never past strength 1).
4. **hair** (``hair.py``) - grey strands mixed into the person's own hair above ~45; grey hair
   darkened toward brown when rejuvenating from such an age.
5. **beard** (``beard.py``) - facial hair replaced by the person's skin for targets below ~15.
6. **target loop** (``loop.py``) - per face, the strength (scaling steps 1-3 together) at which
   faceage's own age regressor reads the target within 3 years (read relative to its reading of
   the unedited face, whose age is the source age), kept above an identity floor and within
   the artifact guard (fine chroma detail);
   ``loop=off`` gives the open-loop method.
7. **refine** (``refine.py``, ``refine=on``) - a small network trained against real faces of the
   target age corrects each rendered face (a bounded luma change and a smooth colour gain, only
   where the change is pasted), once, on the strength the loop chose.

Eyes and the inner mouth are protected; a grayscale face stays grayscale. The prototypes are built
by ``faceage train prototypes`` (``faceage.training.prototype_builder``) and stored as a
``faceage.models.prototypes.PrototypeSet``; options reach the method through the registry
(``--set KEY=VALUE``).
"""

from faceage.methods.prototype.method import SHIPPED_NAME, FacePlan, PrototypeMethod
from faceage.methods.prototype.shape import cranium_scale

__all__ = ["SHIPPED_NAME", "FacePlan", "PrototypeMethod", "cranium_scale"]
