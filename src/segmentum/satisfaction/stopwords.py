"""Spanish and English stop words shipped with the package (nothing is downloaded at run time).

Words that carry no opinion of their own: articles, pronouns, prepositions, auxiliaries. Words
that do (``no``, ``nunca``, ``muy``, ``not``) are kept out of the lists on purpose: "no llega"
and "muy lento" say something.
"""

from __future__ import annotations

_SPANISH = """
a al algo algun alguna algunas alguno algunos ante antes aqui asi aun aunque bajo cada como
con contra cual cuales cuando de del desde donde dos e el ella ellas ello ellos en entre era
eran eres es esa esas ese eso esos esta estaba estaban estado estamos estan estar estas este
esto estos estoy fue fueron fui ha habia habian han has hasta hay he la las le les lo los me
mi mis mas mucho muchos nos nosotros o os otra otras otro otros para pero por porque que quien
quienes se sea ser si sido sin sobre sois somos son soy su sus suyo tambien tan te tenemos
tener tengo ti tiene tienen todo todos tu tus un una unas uno unos usted ustedes vosotros y ya
él ésta éste aquí así aún cuál cuándo dónde está están estás qué quién sí también tú más
algún había habían sé
"""

_ENGLISH = """
a about above after again all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this
those through to too under until up us very was we were what when where which while who whom
why will with would you your yours yourself yourselves i'm it's we've they're get got also
"""

SPANISH = frozenset(_SPANISH.split())
ENGLISH = frozenset(_ENGLISH.split())
STOP_WORDS = SPANISH | ENGLISH
